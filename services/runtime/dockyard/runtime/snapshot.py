"""Container root filesystems: one writable layer over the image's read-only layers, mounted.

Three implementations of one role, :class:`Snapshotter`, picked by the rootless ladder
(:class:`dockyard.core.rootless.SnapshotterChoice`, decided once at start-up; :func:`snapshotter_for`):

- :class:`OverlaySnapshotter` — kernel overlay, mounted with ``mount(2)`` through ctypes (no process
  spawned), option ``userxattr`` so overlay's own bookkeeping lives in ``user.overlay.*`` xattrs, which
  root of a user namespace may write (and which the unpacked layers use for opaque directories);
- :class:`FuseOverlaySnapshotter` — the ``fuse-overlayfs`` binary (it daemonizes once mounted);
- :class:`CopySnapshotter` — a private copy of every layer, whiteouts applied; always works, costs a copy.

The runtime runs as root of the node's user namespace with its own mount namespace
(:mod:`dockyard.runtime.userns`); mounts made here live in that namespace and survive a restart of
the service, so :meth:`Snapshotter.prepare` and :meth:`Snapshotter.mount` first check whether the
rootfs is already mounted. Layers (``<store>/layers/<chainid>/fs``) are read-only dirs in overlay
format: a deleted file is a char device 0:0, an opaque dir has ``user.overlay.opaque=y``. Both kernel
overlay and fuse-overlayfs 1.10 honour exactly that in lower layers (checked on Debian 12), so layers
are used as they are.

On disk (``root`` is the snapshotter's own directory, e.g. ``<state>/snapshots``)::

    <root>/
      <container-id>/
        upper/      the container's writable layer (what ``commit`` and ``diff`` read)
        work/       overlay's scratch dir, same filesystem as upper; never read
        merged/     the mount point: the container's rootfs
        empty/      only for an image without layers (scratch): the one, empty, lower

    <root>/                          copy snapshotter
      <container-id>/
        merged/     a full private copy of the layers: the rootfs and the "upper" at once
        complete    written once the copy finished; a snapshot without it is copied again

Long layer lists: ``mount(2)`` takes at most a page (4096 bytes) of options, about 50 layers at
``<store>/layers/<64 hex>/fs``. Longer lists are mounted with the new mount API (``fsopen`` +
one ``fsconfig lowerdir+`` per layer, Linux ≥ 6.8), or, where that is missing, by util-linux
``mount`` started in the layers' common parent with relative paths (the kernel resolves them
against the caller's cwd, and ``subprocess``'s ``cwd=`` changes it in the child only).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from dockyard.core.rootless import SnapshotterChoice
from dockyard.runtime import layerdiff
from dockyard.runtime.layerdiff import Change

#: A container id (or any snapshot key): one path component, never ``.``/``..``.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: ``mount(2)`` copies at most one page of options; keep a margin below it.
_MAX_MOUNT_DATA = 4000
_MNT_DETACH = 2
_SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 429, 430, 431, 432  # same on every arch
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100
#: fuse-overlayfs writes its pid-less daemon and returns once mounted; bound the wait anyway.
_FUSE_TIMEOUT = 10.0


class Snapshotter(Protocol):
    """The rootfs of each container: prepared over its image's layers, mounted, diffed, removed.

    ``key`` is the container id. ``lowers`` are the image's layer dirs, bottom first; an empty
    list is an image with no layers. Every method is idempotent and safe to call after a restart.
    """

    kind: SnapshotterChoice

    def prepare(self, key: str, lowers: Sequence[Path]) -> Path:
        """Create the snapshot if needed, mount it, return the rootfs path."""
        ...

    def mount(self, key: str, lowers: Sequence[Path]) -> Path:
        """Mount an existing snapshot again (e.g. at container start); NotFound if there is none."""
        ...

    def unmount(self, key: str) -> None:
        """Detach the rootfs (lazily: busy files keep working); a no-op when not mounted."""
        ...

    def remove(self, key: str) -> None:
        """Unmount and delete everything of the snapshot, whatever state it was left in."""
        ...

    def is_mounted(self, key: str) -> bool: ...

    def upper(self, key: str) -> Path:
        """The dir holding the container's changes (for the copy snapshotter: the whole rootfs)."""
        ...

    def changes(self, key: str, lowers: Sequence[Path]) -> list[Change]:
        """What the container changed, like ``docker diff``."""
        ...

    def write_layer(self, key: str, lowers: Sequence[Path], out: BinaryIO) -> tuple[str, int]:
        """Write the container's changes as an uncompressed OCI layer; ``(diff_id, size)``."""
        ...


def snapshotter_for(choice: SnapshotterChoice, root: Path) -> Snapshotter:
    """The implementation of ``choice`` keeping its snapshots under ``root``."""
    if choice is SnapshotterChoice.OVERLAY:
        return OverlaySnapshotter(root)
    if choice is SnapshotterChoice.FUSE_OVERLAYFS:
        return FuseOverlaySnapshotter(root)
    return CopySnapshotter(root)


# --- mount plumbing -------------------------------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(rc: int, what: str, path: Path | str = "") -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path))
    return rc


def _is_mountpoint(path: Path) -> bool:
    """True when something is mounted on ``path``, including a fuse mount whose daemon died."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return e.errno == errno.ENOTCONN  # a dead fuse-overlayfs: still mounted, needs unmounting
    try:
        parent = os.lstat(path.parent)
    except OSError:
        return False
    return st.st_dev != parent.st_dev or st.st_ino == parent.st_ino


def _detach(path: Path) -> None:
    """``umount2(MNT_DETACH)``; a no-op when nothing is mounted there."""
    if not _is_mountpoint(path):
        return
    if _libc().umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (any more)
            raise FailedPrecondition(f"cannot unmount {path}: {os.strerror(err)}", path=str(path))


def _escape(path: Path | str) -> str:
    """A path as one overlay option value: overlay splits on ``,`` and ``:``, ``\\`` escapes."""
    return re.sub(r"([\\,:])", r"\\\1", str(path))


def _overlay_data(lowers_top_first: Sequence[str], upper: str, work: str) -> str:
    lower = ":".join(_escape(p) for p in lowers_top_first)
    return f"lowerdir={lower},upperdir={_escape(upper)},workdir={_escape(work)},userxattr"


def _mount_overlay_fsconfig(lowers_top_first: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount with the new mount API: one ``lowerdir+`` per layer, so no option-length limit.

    Raises OSError(EINVAL) on kernels without ``lowerdir+`` (< 6.8).
    """
    libc = _libc()
    fs = _check(libc.syscall(_SYS_FSOPEN, b"overlay", 1), "fsopen overlay")  # FSOPEN_CLOEXEC
    try:

        def put(key: str, value: Path) -> None:
            rc = libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0)
            _check(rc, f"fsconfig {key}", value)

        for p in lowers_top_first:
            put("lowerdir+", p)
        put("upperdir", upper)
        put("workdir", work)
        rc = libc.syscall(_SYS_FSCONFIG, fs, 0, b"userxattr", None, 0)  # FSCONFIG_SET_FLAG
        _check(rc, "fsconfig userxattr")
        _check(libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0), "overlay create", target)
        mnt = _check(libc.syscall(_SYS_FSMOUNT, fs, 1, 0), "fsmount", target)  # FSMOUNT_CLOEXEC
        try:
            rc = libc.syscall(
                _SYS_MOVE_MOUNT, mnt, b"", _AT_FDCWD, os.fsencode(target), _MOVE_MOUNT_F_EMPTY_PATH
            )
            _check(rc, "move_mount", target)
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def _mount_overlay_relative(lowers_top_first: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount by util-linux ``mount`` run in the layers' common parent, with relative lower paths."""
    base = Path(os.path.commonpath([str(p) for p in lowers_top_first]))
    rel = [os.path.relpath(p, base) for p in lowers_top_first]
    data = _overlay_data(rel, str(upper), str(work))
    if len(data) > _MAX_MOUNT_DATA:
        raise InvalidArgument(
            f"{len(lowers_top_first)} layers do not fit one overlay mount on this kernel (needs Linux ≥ 6.8)",
            layers=len(lowers_top_first),
        )
    p = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", data, str(target)],
        cwd=base,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise OSError(errno.EIO, f"mount overlay: {p.stderr.strip() or p.returncode}", str(target))


def mount_overlay(
    lowers: Sequence[Path], upper: Path, work: Path, target: Path, *, method: str = "auto"
) -> None:
    """Mount a kernel overlay of ``lowers`` (bottom first) + ``upper`` on ``target``.

    ``method``: ``auto`` (one ``mount(2)`` when the options fit a page, else ``fsconfig``, else the
    relative-path ``mount``), or ``mount2``/``fsconfig``/``relative`` to force one (tests).
    """
    top_first = [Path(p) for p in reversed(lowers)]
    data = _overlay_data([str(p) for p in top_first], str(upper), str(work))
    if method == "mount2" or (method == "auto" and len(data) <= _MAX_MOUNT_DATA):
        rc = _libc().mount(b"overlay", os.fsencode(target), b"overlay", 0, data.encode())
        _check(rc, "mount overlay", target)
        return
    if method in ("auto", "fsconfig"):
        try:
            _mount_overlay_fsconfig(top_first, upper, work, target)
            return
        except OSError as e:
            if method == "fsconfig" or e.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    _mount_overlay_relative(top_first, upper, work, target)


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or key in (".", ".."):
        raise InvalidArgument(f"invalid snapshot key {key!r}", key=key)
    return key


def _rmtree(path: Path) -> None:
    """Delete ``path`` and all below it; already gone is fine.

    Runs as root of the namespace, so overlay's mode-000 ``work/work`` and files of any mapped id
    are no obstacle.
    """
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


# --- overlay-style snapshotters -------------------------------------------------------------------------


class _OverlayBase:
    """What kernel overlay and fuse-overlayfs share: the ``upper/work/merged`` tree and its life."""

    kind: SnapshotterChoice

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, key: str) -> Path:
        return self.root / _check_key(key)

    def upper(self, key: str) -> Path:
        return self._dir(key) / "upper"

    def is_mounted(self, key: str) -> bool:
        return _is_mountpoint(self._dir(key) / "merged")

    def prepare(self, key: str, lowers: Sequence[Path]) -> Path:
        d = self._dir(key)
        merged = d / "merged"
        if _is_mountpoint(merged):
            return merged
        self.root.mkdir(parents=True, exist_ok=True)
        d.mkdir(exist_ok=True)
        upper = d / "upper"
        fresh = not upper.exists()
        for sub in ("upper", "work", "merged"):
            (d / sub).mkdir(mode=0o755, exist_ok=True)
        if fresh and lowers:  # '/' of the rootfs is the upper's root: give it the image's owner and mode
            st = os.lstat(lowers[-1])
            with contextlib.suppress(OSError):  # an id outside our namespace: keep ours
                os.chown(upper, st.st_uid, st.st_gid)
            os.chmod(upper, stat.S_IMODE(st.st_mode))
        elif fresh:  # scratch: '/' is 0755, not the service's umask 077
            os.chmod(upper, 0o755)
        return self.mount(key, lowers)

    def mount(self, key: str, lowers: Sequence[Path]) -> Path:
        d = self._dir(key)
        merged = d / "merged"
        if _is_mountpoint(merged):
            return merged
        if not (d / "upper").is_dir():
            raise NotFound(f"no snapshot {key}", key=key)
        for p in lowers:
            if not Path(p).is_dir():
                raise NotFound(f"layer {p} is missing", key=key, layer=str(p))
        if not lowers:  # scratch: overlay needs one lower; an empty one
            (d / "empty").mkdir(exist_ok=True)
            lowers = [d / "empty"]
        for sub in ("work", "merged"):
            (d / sub).mkdir(mode=0o755, exist_ok=True)
        self._mount(list(lowers), d / "upper", d / "work", merged)
        return merged

    def _mount(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
        raise NotImplementedError

    def unmount(self, key: str) -> None:
        _detach(self._dir(key) / "merged")

    def remove(self, key: str) -> None:
        d = self._dir(key)
        self.unmount(key)
        if _is_mountpoint(d / "merged"):  # never delete through a live mount into someone's files
            raise FailedPrecondition(f"snapshot {key} is still mounted", key=key)
        _rmtree(d)

    def changes(self, key: str, lowers: Sequence[Path]) -> list[Change]:
        return layerdiff.changes(self.upper(key), lowers)

    def write_layer(self, key: str, lowers: Sequence[Path], out: BinaryIO) -> tuple[str, int]:
        return layerdiff.write_layer(self.upper(key), lowers, out)


class OverlaySnapshotter(_OverlayBase):
    """Kernel overlay (inside a user namespace from Linux 5.11; as real root anywhere).

    Costs one ``mount(2)`` and one ``umount2(2)`` syscall; no process is spawned.
    """

    kind = SnapshotterChoice.OVERLAY

    def __init__(self, root: Path, *, method: str = "auto") -> None:
        super().__init__(root)
        self._method = method

    def _mount(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
        try:
            mount_overlay(lowers, upper, work, merged, method=self._method)
        except OSError as e:
            raise FailedPrecondition(
                f"cannot mount overlay on {merged}: {e.strerror}", path=str(merged)
            ) from e


class FuseOverlaySnapshotter(_OverlayBase):
    """fuse-overlayfs: one daemon per mounted rootfs, started here, gone when unmounted.

    fuse-overlayfs leaves its own marks in the upper dir (a ``.wh..wh..opq`` file, a ``.wh..opq``
    whiteout and ``user.fuseoverlayfs.opaque`` on every dir it creates or makes opaque);
    :mod:`~dockyard.runtime.layerdiff` reads them. Costs one process spawn (~10 ms) per mount.
    """

    kind = SnapshotterChoice.FUSE_OVERLAYFS

    def __init__(self, root: Path, binary: str = "fuse-overlayfs") -> None:
        super().__init__(root)
        self._binary = binary

    def _mount(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
        paths = [*lowers, upper, work]
        bad = [str(p) for p in paths if any(c in str(p) for c in ",:\\")]
        if bad:
            raise InvalidArgument(f"fuse-overlayfs cannot take a path containing , : or \\: {bad[0]}")
        lower = ":".join(str(p) for p in reversed(lowers))
        argv = [self._binary, "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)]
        try:
            p = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_FUSE_TIMEOUT
            )
        except FileNotFoundError as e:
            raise Unavailable(f"{self._binary} is not installed: apt install fuse-overlayfs") from e
        except subprocess.TimeoutExpired as e:
            raise Unavailable(f"{self._binary} did not mount {merged} within {_FUSE_TIMEOUT:g}s") from e
        if p.returncode != 0 or not _is_mountpoint(merged):
            why = [ln for ln in p.stderr.splitlines() if ln.strip() and "unknown argument ignored" not in ln]
            msg = why[-1] if why else f"exit status {p.returncode}"
            raise FailedPrecondition(f"fuse-overlayfs could not mount {merged}: {msg}", path=str(merged))


# --- copy -----------------------------------------------------------------------------------------------


class CopySnapshotter:
    """A private copy of the image per container: the rung that always works.

    Costs a full copy of every layer at :meth:`prepare` (``sendfile`` per file); mounting and
    unmounting are free. ``diff`` compares the copy with the layers (type, mode, owner, size, mtime).
    """

    kind = SnapshotterChoice.COPY

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, key: str) -> Path:
        return self.root / _check_key(key)

    def upper(self, key: str) -> Path:
        return self._dir(key) / "merged"

    def is_mounted(self, key: str) -> bool:
        return (self._dir(key) / "complete").exists()

    def prepare(self, key: str, lowers: Sequence[Path]) -> Path:
        d = self._dir(key)
        merged = d / "merged"
        if (d / "complete").exists():
            return merged
        _rmtree(merged)  # a copy cut short: start over
        self.root.mkdir(parents=True, exist_ok=True)
        d.mkdir(exist_ok=True)
        merged.mkdir(mode=0o755)
        merged.chmod(0o755)  # the rootfs' '/', whatever the service's umask (077)
        layerdiff.apply_layers(lowers, merged)
        (d / "complete").touch()
        return merged

    def mount(self, key: str, lowers: Sequence[Path]) -> Path:
        if not self._dir(key).is_dir():
            raise NotFound(f"no snapshot {key}", key=key)
        return self.prepare(key, lowers)

    def unmount(self, key: str) -> None:
        self._dir(key)  # nothing is mounted; the key is still checked

    def remove(self, key: str) -> None:
        _rmtree(self._dir(key))

    def changes(self, key: str, lowers: Sequence[Path]) -> list[Change]:
        return layerdiff.changes(self.upper(key), lowers, full_copy=True)

    def write_layer(self, key: str, lowers: Sequence[Path], out: BinaryIO) -> tuple[str, int]:
        return layerdiff.write_layer(self.upper(key), lowers, out, full_copy=True)
