"""Typed errors of the core, mapped once per boundary.

The core raises these and nothing transport-shaped. Each boundary maps them once:
``dockyard.adapters.grpc.errors`` to gRPC status codes, the registry's HTTP layer to OCI
error codes, the CLI to one readable line. ``code`` is the stable, machine-readable name.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error the core raises on purpose.

    ``message`` is safe to show a user; ``detail`` carries structured context (ids, digests).
    """

    code = "UNKNOWN"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DockyardError):
    """The caller sent something malformed: a bad name, digest, flag or document."""

    code = "INVALID_ARGUMENT"


class NotFound(DockyardError):
    """The named thing does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(DockyardError):
    """Creating something whose name is taken."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(DockyardError):
    """The system is not in a state where this can be done (e.g. removing a running container)."""

    code = "FAILED_PRECONDITION"


class OutOfRange(DockyardError):
    """An offset or range the target does not cover (e.g. a chunk out of order)."""

    code = "OUT_OF_RANGE"


class Unauthenticated(DockyardError):
    """No or bad credentials."""

    code = "UNAUTHENTICATED"


class PermissionDenied(DockyardError):
    """Credentials are good but do not allow this."""

    code = "PERMISSION_DENIED"


class ResourceExhausted(DockyardError):
    """A limit was hit: size, rate, quota."""

    code = "RESOURCE_EXHAUSTED"


class StorageFull(ResourceExhausted):
    """The disk (or quota) under a store is full: the server's condition, not the caller's mistake.

    Writes fail until space is freed; reads keep working. Retrying later may succeed.
    """

    code = "RESOURCE_EXHAUSTED"


class Unavailable(DockyardError):
    """A dependency (a backend service, NATS, a node) cannot be reached right now; retrying may work."""

    code = "UNAVAILABLE"


class Unimplemented(DockyardError):
    """The operation exists in the contract but this build does not do it yet."""

    code = "UNIMPLEMENTED"


class Internal(DockyardError):
    """A bug or a broken invariant; never the caller's fault."""

    code = "INTERNAL"
