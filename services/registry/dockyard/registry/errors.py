"""Registry errors: the core's typed errors, each carrying its OCI Distribution error code.

Every class subclasses one of ``dockyard.core.errors`` so that other boundaries (gRPC) map
them without knowing OCI. The HTTP layer maps them to a status and the spec's JSON body in
one table (``dockyard.registry.http.OCI_STATUS``); ``oci_code`` is the spec's code string.
``DigestInvalid`` and ``ManifestInvalid`` are the OCI model's own (``dockyard.core.oci``), mapped
the same way.
"""

from __future__ import annotations

from typing import Any

from dockyard.core import errors as core


class BlobUnknown(core.NotFound):
    oci_code = "BLOB_UNKNOWN"


class BlobUploadUnknown(core.NotFound):
    oci_code = "BLOB_UPLOAD_UNKNOWN"


class BlobUploadInvalid(core.InvalidArgument):
    oci_code = "BLOB_UPLOAD_INVALID"


class RangeInvalid(core.OutOfRange):
    """A chunk that does not start where the upload ends; the HTTP layer answers 416 + ``Range``."""

    oci_code = "BLOB_UPLOAD_INVALID"

    def __init__(self, message: str, *, offset: int, **detail: Any) -> None:
        super().__init__(message, offset=offset, **detail)
        self.offset = offset


class SizeInvalid(core.InvalidArgument):
    oci_code = "SIZE_INVALID"


class NameInvalid(core.InvalidArgument):
    oci_code = "NAME_INVALID"


class NameUnknown(core.NotFound):
    oci_code = "NAME_UNKNOWN"


class ManifestUnknown(core.NotFound):
    oci_code = "MANIFEST_UNKNOWN"


class ManifestBlobUnknown(core.FailedPrecondition):
    oci_code = "MANIFEST_BLOB_UNKNOWN"


class ManifestTooLarge(core.ResourceExhausted):
    oci_code = "SIZE_INVALID"


class TooManyUploads(core.ResourceExhausted):
    """A repository holds as many open upload sessions as the registry allows (429 + Retry-After)."""

    oci_code = "TOOMANYREQUESTS"


class TooManyTags(core.ResourceExhausted):
    """More ``?tag=`` parameters on one manifest push than allowed (414, as the spec suggests)."""

    oci_code = "TAG_INVALID"


class StorageFull(core.StorageFull):
    """ENOSPC/EDQUOT under the storage root: 507 Insufficient Storage, never the client's fault.

    The spec's code list has nothing for it; ``UNAVAILABLE`` is what CNCF distribution uses for a
    server-side condition a client may retry later.
    """

    oci_code = "UNAVAILABLE"


class TagInvalid(core.InvalidArgument):
    oci_code = "TAG_INVALID"


class AuthenticationRequired(core.Unauthenticated):
    """No or bad credentials; ``challenge`` is the ``WWW-Authenticate`` value to answer with."""

    oci_code = "UNAUTHORIZED"

    def __init__(self, message: str, *, challenge: str, **detail: Any) -> None:
        super().__init__(message, **detail)
        self.challenge = challenge


class Denied(core.PermissionDenied):
    oci_code = "DENIED"
