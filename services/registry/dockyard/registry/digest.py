"""Content digests (``<algorithm>:<hex>``) for the algorithms the registry accepts.

Only ``sha256`` and ``sha512`` are accepted; the hex part must be lowercase and of the exact
length, which also makes a digest safe to use as a path component.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from dockyard.registry.errors import DigestInvalid

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha512):([a-f0-9]+)")


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
