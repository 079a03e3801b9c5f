"""Content digests (``<algorithm>:<hex>``): parsing, validating, computing.

Two strictnesses, because the parts of Dockyard accept different things:

* ``Digest.parse`` takes ``sha256`` and ``sha512`` (what a registry must accept from clients);
* ``check_sha256`` takes only ``sha256`` (what the node's store and the builder name content by).

Either way the hex part must be lowercase and of the exact length, which also makes a digest
safe to use as a path component.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol, TypeGuard

from dockyard.core.errors import InvalidArgument

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha512):([a-f0-9]+)")
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")


class DigestInvalid(InvalidArgument):
    """A malformed or unsupported digest, or content that does not hash to the one given."""

    oci_code = "DIGEST_INVALID"  # the Distribution spec's error code (the registry's HTTP side)


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated digest. ``str(d)`` is the canonical ``alg:hex`` form."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, raw: str) -> Digest:
        """Parse ``alg:hex``; raises DigestInvalid for anything else (case, length, algorithm)."""
        m = _DIGEST_RE.fullmatch(raw or "")
        if m is None or len(m.group(2)) != ALGORITHMS[m.group(1)]:
            raise DigestInvalid(f"invalid digest {raw[:200]!r}", digest=raw[:200])
        return cls(m.group(1), m.group(2))

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data`` (in memory; meant for manifests, not blobs)."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest(raw: str) -> bool:
    """Whether ``raw`` looks like a digest at all (``alg:...``), as opposed to a tag."""
    return ":" in raw


def new_hasher(algorithm: str) -> Hasher:
    if algorithm not in ALGORITHMS:
        raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def is_sha256(raw: object) -> TypeGuard[str]:
    """Whether ``raw`` is a valid ``sha256:<64 lowercase hex>``."""
    return isinstance(raw, str) and _SHA256_RE.fullmatch(raw) is not None


def check_sha256(digest: str) -> str:
    """Return the hex part of a valid ``sha256:<64 lowercase hex>``; DigestInvalid otherwise."""
    if not is_sha256(digest):
        raise DigestInvalid(f"invalid digest {str(digest)[:100]!r}: want sha256:<64 lowercase hex>")
    return digest[7:]


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of bytes in memory (manifests, configs; not blobs of unknown size)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
