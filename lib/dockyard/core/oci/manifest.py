"""Manifests and descriptors: parsing and validating the manifest kinds Dockyard handles.

Accepted: OCI image manifest and index (v1), Docker schema2 manifest and manifest list. A
manifest is validated as JSON of the right shape (every descriptor has a valid ``digest``, a
non-negative integer ``size`` and a ``mediaType``); whether the blobs it references exist is the
registry's business, not this module's.

``ManifestDescriptor`` is the lighter record a registry client keeps of one manifest it pushed
or fetched (the runtime's distribution client, the builder's registry cache).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.core.errors import InvalidArgument
from dockyard.core.oci.digest import Digest, DigestInvalid
from dockyard.core.oci.mediatypes import (
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
)


class ManifestInvalid(InvalidArgument):
    """A document that is not one of the accepted manifest kinds, or not of the right shape."""

    oci_code = "MANIFEST_INVALID"  # the Distribution spec's error code (the registry's HTTP side)


@dataclass(frozen=True, slots=True)
class ManifestDescriptor:
    """A manifest as a registry serves it: what a push produced, or what a GET returned."""

    media_type: str
    digest: str  # sha256:<hex>
    size: int


# Layers clients may legitimately not push (Windows foreign layers, non-distributable layers).
_UNPUSHED_LAYER_MARKERS = ("foreign", "nondistributable")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @property
    def must_exist(self) -> bool:
        """Whether the registry must hold this blob for a manifest referencing it to be accepted."""
        return not any(m in self.media_type for m in _UNPUSHED_LAYER_MARKERS)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            doc["artifactType"] = self.artifact_type
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest. ``blobs`` are config + layers; ``children`` the manifests of an index."""

    media_type: str
    blobs: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str
    annotations: dict[str, str]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def references(self) -> tuple[Descriptor, ...]:
        """Everything this manifest keeps alive for GC (its subject excluded: a referrer does not own it)."""
        return self.blobs + self.children


def parse_manifest(data: bytes, content_type: str = "") -> Manifest:
    """Parse and validate ``data``; ``content_type`` is the request's, used when the body has none.

    Raises ``ManifestInvalid`` for anything that is not one of the accepted kinds. Cost: one JSON parse.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest is not JSON: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested "[": no manifest nests deeper than a few levels
        raise ManifestInvalid("manifest is not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid("unsupported schemaVersion (want 2)")
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("mediaType is not a string")
    header_type = content_type.split(";")[0].strip()
    media_type = body_type or (header_type if header_type in MANIFEST_TYPES else "")
    if not media_type:
        # OCI allows mediaType to be absent; the shape tells which kind it is.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest mediaType {media_type!r}")
    if body_type and header_type in MANIFEST_TYPES and header_type != body_type:
        raise ManifestInvalid(f"Content-Type {header_type!r} disagrees with mediaType {body_type!r}")

    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    if media_type in INDEX_TYPES:
        children = tuple(_descriptor(d, "manifests[]") for d in _list(doc, "manifests"))
    else:
        config = _descriptor(doc.get("config"), "config")
        layers = _list(doc, "layers") if "layers" in doc or media_type == DOCKER_MANIFEST else []
        blobs = (config, *(_descriptor(d, "layers[]") for d in layers))
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType") or ""
    if not isinstance(artifact_type, str):
        raise ManifestInvalid("artifactType is not a string")
    if not artifact_type and media_type == OCI_MANIFEST:
        # Referrers API: an image manifest without artifactType is typed by its config.
        artifact_type = blobs[0].media_type if blobs[0].media_type != OCI_EMPTY else ""
    return Manifest(media_type, blobs, children, subject, artifact_type, _annotations(doc))


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise ManifestInvalid(f"{key} must be a list")
    return value


def _annotations(doc: dict[str, Any]) -> dict[str, str]:
    value = doc.get("annotations") or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestInvalid("annotations must map strings to strings")
    return value


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ManifestInvalid(f"{where} is not a descriptor object")
    media_type, size = raw.get("mediaType"), raw.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}.mediaType missing")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}.size must be a non-negative integer")
    try:
        digest = Digest.parse(raw.get("digest") or "")
    except DigestInvalid:
        raise ManifestInvalid(f"{where}.digest invalid: {str(raw.get('digest'))[:100]!r}") from None
    artifact_type = raw.get("artifactType") or ""
    urls = raw.get("urls") or []
    if not isinstance(artifact_type, str) or not isinstance(urls, list):
        raise ManifestInvalid(f"{where} has a malformed artifactType or urls")
    return Descriptor(media_type, digest, size, artifact_type, _annotations(raw), tuple(map(str, urls)))
