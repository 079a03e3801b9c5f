"""The node's content store: immutable blobs named by their sha256 digest.

Everything an image is made of (manifests, configs, compressed or plain layer tars) lives here
once, whatever number of images share it::

    <root>/
      blobs/sha256/<hex>          content, written once, never modified; readable only by the owner
      ingest/<random>             a blob being written: hashed while streaming, fsynced, then
                                  renamed to blobs/ — or deleted when it does not match

Contracts:

* Nothing half-written is ever visible under ``blobs/``: a blob appears by ``rename`` after its
  bytes were fsynced and its digest (and size, when given) checked. ``kill -9`` at any point
  leaves at worst a stray file under ``ingest/``, swept by the next ``ContentStore`` on start.
* Memory is bounded by one chunk whatever the blob size; ``ingest`` never buffers a whole blob.
* Digests are validated (``sha256:`` + 64 lowercase hex) before they touch a path, so a digest
  can never name a file outside ``blobs/``.
* Thread-safe without a lock: every mutation is a create in ``ingest/``, a rename or an unlink.
  Two writers of the same content both succeed (the second rename replaces identical bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.fsutil import FULL_ERRNOS, fsync_dir, start_writeback, storage_full
from dockyard.core.oci.digest import check_sha256, is_sha256, sha256_digest

CHUNK_SIZE = 1 << 20  # 1 MiB reads: few syscalls, bounded memory
WRITEBACK_EVERY = 8 << 20  # start writeback every 8 MiB so the committing fsync is short


class ContentStore:
    """Content-addressed blobs under ``root`` (see the module docstring for the tree)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._ingest = self.root / "ingest"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(parents=True, exist_ok=True)
        for stray in self._ingest.iterdir():  # left by a crash mid-write; never visible as blobs
            with contextlib.suppress(OSError):
                stray.unlink()

    # -- writing ---------------------------------------------------------------------------

    def ingest(
        self, chunks: Iterable[bytes], expected: str | None = None, size: int | None = None
    ) -> tuple[str, int]:
        """Stream ``chunks`` into a blob; returns ``(digest, size)``.

        With ``expected`` and/or ``size`` the content must match them, else InvalidArgument and
        nothing is kept. Cost: one pass over the bytes (hash + write), one fsync, one rename.
        """
        if expected is not None:
            check_sha256(expected)
        tmp = self._ingest / uuid.uuid4().hex
        hasher = hashlib.sha256()
        written = 0
        synced = 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    if not chunk:
                        continue
                    hasher.update(chunk)
                    fh.write(chunk)
                    written += len(chunk)
                    if size is not None and written > size:
                        raise InvalidArgument(
                            f"blob is larger than its declared size {size}", expected=expected
                        )
                    if written - synced >= WRITEBACK_EVERY:
                        fh.flush()
                        start_writeback(fh.fileno(), synced, written - synced)
                        synced = written
                fh.flush()
                os.fsync(fh.fileno())
            digest = "sha256:" + hasher.hexdigest()
            if size is not None and written != size:
                raise InvalidArgument(
                    f"blob size {written} does not match the declared size {size}", expected=expected
                )
            if expected is not None and digest != expected:
                raise InvalidArgument(
                    f"blob digest {digest} does not match the expected {expected}", expected=expected
                )
            target = self._blobs / digest[7:]
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
            fsync_dir(self._blobs)
            return digest, written
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            raise storage_full(exc, tmp) from None  # the partial file goes below
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write_bytes(self, data: bytes) -> str:
        """Store ``data`` (a manifest or config); returns its digest."""
        if self.has(digest := sha256_digest(data)):
            return digest
        return self.ingest([data], expected=digest, size=len(data))[0]

    def ingest_file(self, path: Path, expected: str | None = None) -> tuple[str, int]:
        """Stream a local file into a blob (the file itself is left in place)."""
        with open(path, "rb") as fh:
            return self.ingest(iter(lambda: fh.read(CHUNK_SIZE), b""), expected=expected)

    # -- reading ---------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        return (self._blobs / check_sha256(digest)).is_file()

    def path(self, digest: str) -> Path:
        """The blob's file (for readers that want a path); NotFound when absent."""
        p = self._blobs / check_sha256(digest)
        if not p.is_file():
            raise NotFound(f"blob {digest} not found", digest=digest)
        return p

    def open(self, digest: str) -> BinaryIO:
        """An open binary stream of the blob; the caller closes it. NotFound when absent."""
        try:
            return open(self._blobs / check_sha256(digest), "rb")  # the caller closes it
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found", digest=digest) from None

    def read_bytes(self, digest: str) -> bytes:
        """The whole blob in memory: for manifests and configs, not layers."""
        with self.open(digest) as fh:
            return fh.read()

    def chunks(self, digest: str) -> Iterator[bytes]:
        """The blob as a stream of chunks (bounded memory). NotFound is raised here, not on iteration."""
        return _read_chunks(self.open(digest))

    def size(self, digest: str) -> int:
        try:
            return (self._blobs / check_sha256(digest)).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found", digest=digest) from None

    def digests(self) -> list[str]:
        """Every stored digest (sorted)."""
        return sorted("sha256:" + p.name for p in self._blobs.iterdir() if is_sha256("sha256:" + p.name))

    # -- removing --------------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        """Remove a blob; a missing blob is not an error."""
        with contextlib.suppress(FileNotFoundError):
            (self._blobs / check_sha256(digest)).unlink()


def _read_chunks(fh: BinaryIO) -> Iterator[bytes]:
    with fh:
        yield from iter(lambda: fh.read(CHUNK_SIZE), b"")
