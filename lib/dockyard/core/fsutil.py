"""Small filesystem facts every durable write in Dockyard relies on."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable
from pathlib import Path

from dockyard.core.errors import StorageFull

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left; disk quota exceeded


def fsync_dir(path: Path | str) -> None:
    """Make a rename or create inside ``path`` durable (the entry, not just the file's bytes)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def full_disk_error(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind ``exc`` (itself, or what it was raised from), or None."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain: an error re-raised as another, at most a few times
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def mount_point(path: Path | str) -> Path:
    """The mount point of the filesystem that holds ``path`` (or its nearest existing parent)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    dev = here.stat().st_dev
    while here != here.parent and here.parent.stat().st_dev == dev:
        here = here.parent
    return here


def storage_full(exc: OSError, path: Path | str | None = None) -> StorageFull:
    """One line for a write that ran out of space: which filesystem is full, and what to do.

    ``path`` is where the write went when the OSError does not say (a write() has no filename).
    """
    where = exc.filename or path
    reason = os.strerror(exc.errno or errno.ENOSPC).lower()
    if where is None:
        return StorageFull(f"{reason}: free some space and retry")
    try:
        mount = str(mount_point(where))
    except OSError:
        mount = "?"
    return StorageFull(
        f"{reason}: the filesystem mounted at {mount} (holding {where}) is full; free some space and retry",
        path=str(where),
        mount=mount,
    )


_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages in the range; do not wait


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux/glibc: the final fsync simply does all the work
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to begin writing ``length`` bytes at ``offset`` to disk, without waiting.

    A large file written this way along the stream leaves little for its final fsync, so the
    commit that makes it durable is short. Best effort: a no-op where unsupported.
    """
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


MAX_SYMLINKS = 40  # links followed in one lookup before giving up, as Linux does (ELOOP)


def follow_in_root(
    path: str, lstat: Callable[[str], os.stat_result | None], readlink: Callable[[str], str]
) -> tuple[str, os.stat_result | None] | None:
    """``path`` looked up as if a tree's top were "/": every symlink on the way (absolute or
    relative) is followed and neither it nor ``..`` ever leads above the top.

    ``lstat(rel)`` (None when missing) and ``readlink(rel)`` read the tree at a path relative to
    its top; they are how one walk serves a directory, a volume and an image's stacked layers.
    Returns the relative path reached (no symlink in it) with its lstat (None for the top
    itself), or None when a component is missing. InvalidArgument after ``MAX_SYMLINKS`` links.
    """
    from dockyard.core.errors import InvalidArgument

    pending = [p for p in path.split("/") if p not in ("", ".")]
    parts: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if parts:
                parts.pop()
            continue
        rel = "/".join([*parts, part])
        st = lstat(rel)
        if st is None:
            return None
        if st.st_mode & 0o170000 == 0o120000:  # a symlink
            links += 1
            if links > MAX_SYMLINKS:
                raise InvalidArgument(f"{path[:300]}: too many levels of symbolic links")
            target = readlink(rel)
            if target.startswith("/"):
                parts = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        parts.append(part)
    rel = "/".join(parts)
    return rel, (lstat(rel) if rel else None)


def lstat_under(top: Path) -> Callable[[str], os.stat_result | None]:
    """``follow_in_root``'s ``lstat`` for a plain directory tree."""

    def look(rel: str) -> os.stat_result | None:
        try:
            return os.lstat(top / rel)
        except (FileNotFoundError, NotADirectoryError):
            return None

    return look
