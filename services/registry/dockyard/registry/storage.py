"""Where the registry keeps bytes: a small ``StorageDriver`` protocol and its filesystem implementation.

The registry core speaks only in *logical paths* (``/``-separated, relative, no ``.``/``..``/empty
components); a driver maps them to its medium. The filesystem driver lays them out under
``root`` exactly as named::

    <root>/
      blobs/
        sha256/<hex>                  content, written once, immutable; manifests are blobs too
        sha512/<hex>
      ingest/<uuid>                   small files being written (tags, links, state); renamed into place
      uploads/<uuid>/
        data                          bytes of an upload session received so far (offset == size)
        state.json                    {"repository": ..., "started": ...}
      repositories/<name>/…           <name> may hold "/"; components never start with "_"
        _layers/<alg>/<hex>           empty file: blob linked into this repository
        _manifests/revisions/<alg>/<hex>   {"mediaType": ...}: manifest present in this repository
        _manifests/tags/<tag>         "<alg>:<hex>": what the tag points to
        _referrers/<alg>/<subject-hex>/<alg>-<hex>   descriptor JSON of a manifest whose subject is it

Contracts every driver keeps (checked by ``tests/unit/registry/test_storage.py``, which is
parametrised over drivers so an S3 driver can join it):

* ``put_bytes`` and ``move`` are atomic: a reader sees the old content or the new, never a mix.
  ``move`` onto an existing path replaces it (content-addressed targets hold the same bytes).
* Nothing written through ``writer`` is visible under ``blobs/`` until ``move``\\ d there.
* ``writer``/``reader`` stream; no method loads a whole file unless asked (``read_bytes`` with a limit).
* Missing paths: ``stat`` returns None, ``delete`` is a no-op, ``list``/``walk`` yield nothing,
  ``reader``/``read_bytes`` raise ``dockyard.core.errors.NotFound``.

Full disk: every writing method raises ``dockyard.registry.errors.StorageFull`` on ENOSPC/EDQUOT
(a chunk being written is then rolled back by its caller); reads keep working.

Durability (filesystem): a file is fsynced before it is renamed into place, and the target
directory after, so a committed blob, tag or link survives power loss; ``kill -9`` at any point
leaves at worst a stray file under ``ingest/`` or ``uploads/``, swept by the registry.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.fsutil import fsync_dir, start_writeback
from dockyard.registry.errors import StorageFull

CHUNK_SIZE = 1 << 20  # 1 MiB: large enough to amortise syscalls, small enough to bound memory
WRITEBACK_EVERY = 8 << 20  # start writeback of uploads every 8 MiB (see _FileWriter.write)


_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _disk(what: str) -> Iterator[None]:
    """Turn "no space left" (or quota) into StorageFull: the server's condition, not the client's."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFull(f"registry storage is full ({what}: {os.strerror(exc.errno)})") from None
        raise


@dataclass(frozen=True, slots=True)
class Space:
    """Free and total bytes of the filesystem under a storage root (``free`` is what we may use)."""

    free: int
    total: int


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What ``stat``/``walk`` report. ``mtime`` is seconds since the epoch."""

    path: str
    size: int
    mtime: float
    is_dir: bool


class Writer(Protocol):
    """An open, append-only stream into a not-yet-visible file."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def truncate(self, size: int) -> None:
        """Drop everything after ``size`` (used to roll back a chunk that arrived broken)."""
        ...

    def close(self, *, sync: bool = False) -> None:
        """Close; with ``sync`` the bytes are on stable storage when this returns."""
        ...


class StorageDriver(Protocol):
    """The narrow interface the registry core needs from a storage medium."""

    def stat(self, path: str) -> FileInfo | None: ...

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """An open binary stream positioned at ``offset``; the caller closes it."""
        ...

    def local_path(self, path: str) -> Path | None:
        """A real filesystem path for zero-copy serving (sendfile), or None if the medium has none."""
        ...

    def read_bytes(self, path: str, limit: int) -> bytes:
        """The whole file; raises ``InvalidArgument`` when it is larger than ``limit``."""
        ...

    def put_bytes(self, path: str, data: bytes) -> None:
        """Atomically create or replace a small file."""
        ...

    def writer(self, path: str, *, append: bool = False) -> Writer:
        """Open ``path`` (under ``uploads/`` or ``ingest/``) for streaming writes."""
        ...

    def move(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` to ``dst`` (replacing it), creating parents."""
        ...

    def list(self, path: str) -> list[str]:
        """Sorted names of the direct children of directory ``path``."""
        ...

    def walk(self, path: str) -> Iterator[FileInfo]:
        """Every file (not directory) under ``path``, recursively, in no particular order."""
        ...

    def delete(self, path: str) -> None:
        """Remove a file or a whole tree."""
        ...

    def space(self) -> Space:
        """Free and total bytes of the medium (what ``dockyard info`` shows)."""
        ...


def check_path(path: str) -> str:
    """Reject anything but a clean relative logical path (the last line of path-traversal defence)."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "\x00" in path or "\\" in path:
        raise InvalidArgument(f"bad storage path {path!r}")
    return path


class _FileWriter:
    """Unbuffered: callers write ~1 MiB batches, and a failed write (disk full) must leave no bytes
    in a user-space buffer that a later flush would append after a rollback."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._written_back = size

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        with _disk("write"):
            while view:
                n = os.write(self._fd, view)
                self._size += n
                view = view[n:]
        if self._size - self._written_back >= WRITEBACK_EVERY:
            # Let the disk start on it now, so the fsync that commits the blob is short.
            start_writeback(self._fd, self._written_back, self._size - self._written_back)
            self._written_back = self._size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self._size = size
        self._written_back = min(self._written_back, size)

    def close(self, *, sync: bool = False) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            if sync:
                with _disk("fsync"):
                    os.fsync(fd)
        finally:
            os.close(fd)


class FilesystemDriver:
    """``StorageDriver`` over a local directory. Thread-safe: every mutation is a rename or unlink."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for area in ("blobs", "ingest", "uploads", "repositories"):
            (self.root / area).mkdir(parents=True, exist_ok=True)

    def _p(self, path: str) -> Path:
        return self.root / check_path(path)

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = self._p(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileInfo(path, st.st_size, st.st_mtime, os.path.isdir(self._p(path)))

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        try:
            fh = open(self._p(path), "rb")  # noqa: SIM115 - the caller owns and closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{path} not found", path=path) from None
        if offset:
            fh.seek(offset)
        return fh

    def local_path(self, path: str) -> Path | None:
        return self._p(path)

    def read_bytes(self, path: str, limit: int) -> bytes:
        with self.reader(path) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"{path} is larger than {limit} bytes", path=path)
        return data

    def put_bytes(self, path: str, data: bytes) -> None:
        target = self._p(path)
        tmp = self.root / "ingest" / uuid.uuid4().hex
        try:
            with _disk(f"writing {path}"):
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                self._rename(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def writer(self, path: str, *, append: bool = False) -> Writer:
        target = self._p(path)
        with _disk(f"creating {path}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (0 if append else os.O_TRUNC)
            fd = os.open(target, flags, 0o600)  # private: the state dir's files are 0600
        return _FileWriter(fd, os.lseek(fd, 0, os.SEEK_END))

    def move(self, src: str, dst: str) -> None:
        source = self._p(src)
        if not source.exists():
            raise NotFound(f"{src} not found", path=src)
        with _disk(f"moving {src}"):
            self._rename(source, self._p(dst))

    def space(self) -> Space:
        """Free (for an unprivileged writer) and total bytes of the filesystem holding the root."""
        st = os.statvfs(self.root)
        return Space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)

    def _rename(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        fsync_dir(target.parent)

    def list(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._p(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(self, path: str) -> Iterator[FileInfo]:
        # Streamed with scandir, one directory open at a time: os.walk lists each directory whole
        # first, and blobs/sha256 holds every blob (7 MB of names at 60,000 blobs, for GC's sweep).
        todo: list[tuple[str | Path, str]] = [(self._p(path), path)]
        while todo:
            directory, rel = todo.pop()
            try:
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):  # deleted while we walk
                        if entry.is_dir():
                            if not entry.is_symlink():
                                todo.append((entry.path, f"{rel}/{entry.name}"))
                            continue
                        st = entry.stat()
                        yield FileInfo(f"{rel}/{entry.name}", st.st_size, st.st_mtime, False)

    def delete(self, path: str) -> None:
        target = self._p(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
