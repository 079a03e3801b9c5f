"""A container's changes: ``docker diff``, the layer ``commit`` writes, and ``docker cp`` in and out.

Inputs are directories the runtime owns, in overlay format:

- a **lower** (an unpacked image layer): a deleted path is a char device 0:0, an opaque dir carries
  ``user.overlay.opaque=y``; lowers are given bottom first;
- an **upper** (a container's writable layer) as kernel overlay leaves it — whiteouts as char
  devices 0:0 (often one inode hard-linked many times), ``user.overlay.opaque=y`` on a dir made
  opaque — or as fuse-overlayfs 1.10 leaves it: on every dir it creates or makes opaque it also
  puts ``user.fuseoverlayfs.opaque=y``, a ``.wh..wh..opq`` file and a ``.wh..opq`` char device 0:0,
  and where it cannot make a device it writes a ``.wh.NAME`` file as whiteout;
- with ``full_copy=True`` (the copy snapshotter) the "upper" is the whole rootfs, compared
  with the lowers entry by entry (type, mode, owner, size, mtime, symlink target; not content).

The layer tar (:func:`write_layer`) is the OCI image-spec layer: PAX format, entries sorted
depth-first with every dir before its contents, numeric ids as stored (the runtime runs inside the
node's user namespace, so these are the container's ids), no user/group names, mtimes in whole
seconds, whiteouts as empty ``.wh.NAME`` files, an opaque dir as its ``.wh..wh..opq`` entry right
after the dir, hard links inside the upper as hard links, sockets left out. It is hashed while it is
written, in 1 MiB chunks (about 1 GB/s here; the digest is the layer's diff_id).

Every walk goes through directory file descriptors with ``O_NOFOLLOW`` (and ``openat2``
``RESOLVE_IN_ROOT`` for paths given by a user), so a container that swaps a dir for a symlink
while it is being read can never make us read or write outside its rootfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from dockyard.core.errors import InvalidArgument, NotFound, Unavailable
from dockyard.core.streams import ChunkReader

OPAQUE_MARKER = ".wh..wh..opq"
WHITEOUT_PREFIX = ".wh."
#: fuse-overlayfs's own opaque mark: a whiteout for this name (``.wh.`` + it is the OCI marker).
_FUSE_OPAQUE_DEVICE = ".wh..opq"
_OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque", "user.fuseoverlayfs.opaque")
_BUFSIZE = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_SYS_OPENAT2 = 437  # same number on every architecture
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH, _RESOLVE_IN_ROOT = 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True, order=True, slots=True)
class Change:
    """One line of ``docker diff``: ``kind`` A (added), C (changed) or D (deleted); ``path`` absolute."""

    path: str  # as the OS gave it: bytes that are not UTF-8 are lone surrogates (surrogateescape)
    kind: Literal["A", "C", "D"]

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"

    @property
    def raw(self) -> bytes:
        """The path's exact bytes (a Linux name is bytes; any but "/" and NUL)."""
        return os.fsencode(self.path)

    @property
    def text(self) -> str:
        """The path as valid UTF-8 text, each byte outside a valid sequence as ``\\xNN``: what a
        string on the wire can hold (:attr:`raw` is the faithful form)."""
        return self.raw.decode("utf-8", "backslashreplace")


def is_whiteout(st: os.stat_result) -> bool:
    """An overlay whiteout: a char device 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def opaque_xattr(target: int | str) -> bool:
    """True when the dir (an open fd or a path, not followed) carries any overlay's opaque xattr."""
    try:
        names = (
            os.listxattr(target, follow_symlinks=False) if isinstance(target, str) else os.listxattr(target)
        )
    except OSError:
        return False
    for name in _OPAQUE_XATTRS:
        if name in names:
            with contextlib.suppress(OSError):
                value = (
                    os.getxattr(target, name, follow_symlinks=False)
                    if isinstance(target, str)
                    else os.getxattr(target, name)
                )
                if value == b"y":
                    return True
    return False


class Sink(Protocol):
    """Where a tar goes: a binary file, or anything with ``write`` (a queue to a gRPC stream)."""

    def write(self, data: bytes, /) -> object: ...


# --- walking --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """One entry met by :func:`_walk`. ``parent_fd`` (and a dir's own ``fd``) are valid until the
    next entry is asked for; ``names`` are a dir's children, sorted."""

    rel: str
    name: str
    st: os.stat_result
    parent_fd: int
    fd: int = -1
    names: tuple[str, ...] = ()

    @property
    def parent_rel(self) -> str:
        return self.rel[: len(self.rel) - len(self.name)]


def _walk(top_fd: int, prefix: str = "") -> Iterator[_Entry]:
    """Every entry below the open dir ``top_fd``, depth first, sorted, each dir before its contents.

    Never follows a symlink; holds one fd per level of depth.
    """
    stack: list[tuple[int, str, Iterator[str]]] = [(top_fd, prefix, iter(sorted(os.listdir(top_fd))))]
    try:
        while stack:
            dfd, pre, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if dfd != top_fd:
                    os.close(dfd)
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:  # deleted while we walk (a running container)
                continue
            rel = pre + name
            if not stat.S_ISDIR(st.st_mode):
                yield _Entry(rel, name, st, dfd)
                continue
            try:
                cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # deleted or replaced (by a symlink) while we walk
                raise
            children = tuple(sorted(os.listdir(cfd)))
            stack.append((cfd, rel + "/", iter(children)))
            yield _Entry(rel, name, st, dfd, cfd, children)
    finally:
        for dfd, _, _ in stack:
            if dfd != top_fd:
                os.close(dfd)


@contextlib.contextmanager
def _owned(fd: int) -> Iterator[int]:
    """Close ``fd`` at the end of the block."""
    try:
        yield fd
    finally:
        os.close(fd)


def _opendir(path: Path | str) -> contextlib.AbstractContextManager[int]:
    return _owned(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))


def _upper_opaque(e: _Entry) -> bool:
    """A dir of an upper made opaque by kernel overlay or fuse-overlayfs."""
    return OPAQUE_MARKER in e.names or _FUSE_OPAQUE_DEVICE in e.names or opaque_xattr(e.fd)


class LowerView:
    """The union of the lowers as overlay shows it (whiteouts and opaque dirs applied), looked up
    lazily: a lookup costs one ``lstat`` per layer that holds the parent dir."""

    def __init__(self, lowers: Sequence[Path | str]) -> None:
        self._top_first = [os.fspath(p) for p in reversed(lowers)]
        self._dir_layers: dict[str, tuple[int, ...]] = {"": tuple(range(len(self._top_first)))}

    def _lstat(self, i: int, rel: str) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self._top_first[i], rel))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _layers_of(self, rel: str) -> tuple[int, ...]:
        """The layers (top first) whose contents make up dir ``rel``; empty if it is no dir."""
        hit = self._dir_layers.get(rel)
        if hit is not None:
            return hit
        out: list[int] = []
        for i in self._layers_of(posixpath.dirname(rel)):
            st = self._lstat(i, rel)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a file or a whiteout hides everything below
            out.append(i)
            if opaque_xattr(os.path.join(self._top_first[i], rel)):
                break
        self._dir_layers[rel] = tuple(out)
        return self._dir_layers[rel]

    def lookup(self, rel: str) -> tuple[os.stat_result, str] | None:
        """``(lstat, real path)`` of ``rel`` in the union, or None if it is not there."""
        for i in self._layers_of(posixpath.dirname(rel)):
            st = self._lstat(i, rel)
            if st is None:
                continue
            return None if is_whiteout(st) else (st, os.path.join(self._top_first[i], rel))
        return None

    def listdir(self, rel: str) -> list[str]:
        """The names dir ``rel`` shows in the union."""
        seen: dict[str, bool] = {}
        for i in self._layers_of(rel):
            with os.scandir(os.path.join(self._top_first[i], rel)) as it:
                for d in it:
                    if d.name not in seen:
                        seen[d.name] = not is_whiteout(d.stat(follow_symlinks=False))
        return sorted(n for n, visible in seen.items() if visible)


# --- changes --------------------------------------------------------------------------------------------


def _differs(e: _Entry, lower: tuple[os.stat_result, str]) -> bool:
    a, (b, bpath) = e.st, lower
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode) or a.st_mode != b.st_mode:
        return True
    if (a.st_uid, a.st_gid) != (b.st_uid, b.st_gid):
        return True
    if stat.S_ISDIR(a.st_mode):
        return False  # a dir's own mtime moves with its entries; those are reported themselves
    if a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns or a.st_rdev != b.st_rdev:
        return True
    return stat.S_ISLNK(a.st_mode) and os.readlink(e.name, dir_fd=e.parent_fd) != os.readlink(bpath)


def changes(upper: Path, lowers: Sequence[Path], *, full_copy: bool = False) -> list[Change]:
    """What a container changed, like ``docker diff``, sorted by path.

    A: not in any lower. C: in a lower (for ``full_copy``: and different), including every dir that
    is only in the upper because something below it changed. D: a whiteout over a path the lowers
    have; also each lower entry an opaque dir hides (``full_copy``: each one no longer there), but
    not what is below a deleted dir.
    """
    view = LowerView(lowers)
    found: dict[str, Literal["A", "C", "D"]] = {}
    with _opendir(upper) as top:
        for e in _walk(top):
            st = e.st
            if not full_copy:
                if is_whiteout(st) or (stat.S_ISREG(st.st_mode) and e.name.startswith(WHITEOUT_PREFIX)):
                    if e.name in (OPAQUE_MARKER, _FUSE_OPAQUE_DEVICE):
                        continue
                    gone = e.parent_rel + (e.name if is_whiteout(st) else e.name[len(WHITEOUT_PREFIX) :])
                    if view.lookup(gone) is not None:
                        found[gone] = "D"
                    continue
            elif stat.S_ISSOCK(st.st_mode):
                continue
            low = view.lookup(e.rel)
            if low is None:
                found[e.rel] = "A"
            elif not full_copy or _differs(e, low):
                found[e.rel] = "C"
            if (
                stat.S_ISDIR(st.st_mode)
                and low is not None
                and stat.S_ISDIR(low[0].st_mode)
                and (full_copy or _upper_opaque(e))
            ):
                for name in view.listdir(e.rel):
                    if name not in e.names:
                        found[f"{e.rel}/{name}"] = "D"
    for rel in list(found):  # the dirs a change sits in are changed too
        parent = posixpath.dirname(rel)
        while parent and parent not in found:
            found[parent] = "C"
            parent = posixpath.dirname(parent)
    return sorted(Change("/" + rel, kind) for rel, kind in found.items())


# --- tar writing ----------------------------------------------------------------------------------------

_TYPES = {
    stat.S_IFREG: tarfile.REGTYPE,
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}


class _TarWriter:
    """Writes an uncompressed PAX tar to ``out`` and hashes it on the way (sha256 = the diff_id)."""

    def __init__(self, out: Sink) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0
        self._links: dict[tuple[int, int], str] = {}

    def _write(self, data: bytes) -> None:
        self._hash.update(data)
        self._out.write(data)
        self.size += len(data)

    def _header(self, info: tarfile.TarInfo) -> None:
        info.uname = info.gname = ""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def marker(self, name: str, mtime: float) -> None:
        """An empty regular file: a whiteout ``.wh.NAME`` or the opaque marker."""
        info = tarfile.TarInfo(name)
        info.mode = 0
        info.mtime = int(mtime)
        self._header(info)

    def entry(self, name: str, e: _Entry) -> None:
        """``e`` (found by :func:`_walk`) as member ``name``: its data read through its parent fd."""
        st = e.st
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:  # a socket: not part of a filesystem image
            return
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        fd = -1
        if kind == tarfile.REGTYPE and st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                info.type, info.linkname = tarfile.LNKTYPE, first
        if info.type == tarfile.REGTYPE:
            try:
                fd = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=e.parent_fd)
            except FileNotFoundError:
                return  # deleted since we listed it
            info.size = st.st_size
        elif kind == tarfile.SYMTYPE:
            info.linkname = os.readlink(e.name, dir_fd=e.parent_fd)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self._header(info)
        if fd >= 0:
            try:
                self._data(fd, info.size)
            finally:
                os.close(fd)

    def _data(self, fd: int, size: int) -> None:
        """Exactly ``size`` bytes of ``fd`` (zero-filled if the file shrank since its stat), padded."""
        left = size
        while left:
            data = os.read(fd, min(left, _BUFSIZE)) or bytes(min(left, _BUFSIZE))
            self._write(data)
            left -= len(data)
        if size % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def close(self) -> tuple[str, int]:
        """End the archive (two zero blocks, padded to a record, as tar does); ``(digest, size)``."""
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        if self.size % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - self.size % tarfile.RECORDSIZE))
        return "sha256:" + self._hash.hexdigest(), self.size


def write_layer(
    upper: Path, lowers: Sequence[Path], out: Sink, *, full_copy: bool = False
) -> tuple[str, int]:
    """Write the container's changes to ``out`` as an uncompressed OCI layer; ``(diff_id, size)``.

    Reads every byte of the upper once and holds 1 MiB; a 100 MB upper takes about 0.2 s here.
    ``lowers`` decide which opaque marks matter (fuse-overlayfs marks every new dir opaque; only a
    dir the lowers have needs the marker) and, with ``full_copy``, what changed at all.
    """
    tw = _TarWriter(out)
    if full_copy:
        _write_copy_changes(tw, upper, lowers)
        return tw.close()
    view = LowerView(lowers)
    with _opendir(upper) as top:
        for e in _walk(top):
            st = e.st
            if is_whiteout(st):
                if e.name != _FUSE_OPAQUE_DEVICE:
                    tw.marker(e.parent_rel + WHITEOUT_PREFIX + e.name, st.st_mtime)
                continue
            if e.name == OPAQUE_MARKER and stat.S_ISREG(st.st_mode):
                continue  # fuse-overlayfs's mark, written with its dir below
            tw.entry(e.rel, e)
            if stat.S_ISDIR(st.st_mode) and _upper_opaque(e):
                low = view.lookup(e.rel)
                if low is not None and stat.S_ISDIR(low[0].st_mode):
                    tw.marker(f"{e.rel}/{OPAQUE_MARKER}", st.st_mtime)
    return tw.close()


def _write_copy_changes(tw: _TarWriter, merged: Path, lowers: Sequence[Path]) -> None:
    """The changes of a full copy, sorted by path (so every dir before its contents)."""
    with _opendir(merged) as top:
        for c in changes(merged, lowers, full_copy=True):
            parent, name = posixpath.split(c.path[1:])
            if c.kind == "D":
                tw.marker(posixpath.join(parent, WHITEOUT_PREFIX + name), 0)
                continue
            try:
                pfd = _openat2(
                    top, parent, os.O_PATH | os.O_DIRECTORY, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS
                )
            except NotFound:
                continue  # gone since the walk
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                tw.entry(c.path[1:], _Entry(c.path[1:], name, st, pfd))
            except FileNotFoundError:
                pass
            finally:
                os.close(pfd)


# --- the copy snapshotter's rootfs ----------------------------------------------------------------------


def remove_path(path: str | Path) -> None:
    """Remove whatever is at ``path`` (a tree, a file, a link, a device); nothing if missing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _set_meta(path: str, st: os.stat_result, fd: int = -1) -> None:
    """Owner, mode (after the owner: chown clears set-id bits) and times of ``st`` on ``path``."""
    if fd >= 0:
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def apply_layers(lowers: Sequence[Path], dest: Path) -> None:
    """Copy ``lowers`` (bottom first) into the empty dir ``dest``, whiteouts and opaque dirs applied.

    Owners, modes, mtimes, symlinks and hard links within a layer are kept; device nodes that the
    namespace may not create are left out. Costs one ``sendfile`` per regular file.
    """
    dirs: dict[str, os.stat_result] = {"": os.lstat(lowers[-1])} if lowers else {}
    for layer in lowers:
        links: dict[tuple[int, int], str] = {}
        with _opendir(layer) as top:
            for e in _walk(top):
                st, target = e.st, os.path.join(dest, e.rel)
                if is_whiteout(st):
                    remove_path(target)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if not os.path.isdir(target) or os.path.islink(target) or opaque_xattr(e.fd):
                        remove_path(target)
                        os.mkdir(target, 0o700)
                    dirs[e.rel] = st
                    continue
                remove_path(target)
                if stat.S_ISREG(st.st_mode):
                    first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
                    if first is not None:
                        os.link(first, target, follow_symlinks=False)
                        continue
                    links[(st.st_dev, st.st_ino)] = target
                    src = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=e.parent_fd)
                    try:
                        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                        try:
                            while os.sendfile(dst, src, None, 1 << 30):
                                pass
                            _set_meta(target, st, dst)
                        finally:
                            os.close(dst)
                    finally:
                        os.close(src)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(e.name, dir_fd=e.parent_fd), target)
                elif stat.S_ISFIFO(st.st_mode):
                    os.mkfifo(target, 0o600)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    try:
                        os.mknod(target, st.st_mode, st.st_rdev)
                    except PermissionError:
                        continue  # a user namespace may not make devices; runc bind-mounts /dev
                else:
                    continue  # sockets
                _set_meta(target, st)
    for rel, st in sorted(dirs.items(), reverse=True):  # deepest first: children no longer touch them
        path = os.path.join(dest, rel) if rel else os.fspath(dest)
        if os.path.isdir(path) and not os.path.islink(path):
            _set_meta(path, st)


# --- docker cp ------------------------------------------------------------------------------------------


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.cache
def _syscall() -> Callable[..., int]:
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    return fn


def _open_in_root(root_fd: int, path: str, flags: int) -> int:
    """Open ``path`` as if ``root_fd`` were ``/``: ``..`` and absolute symlinks stop at it."""
    return _openat2(root_fd, path, flags, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """``openat2(2)``; NotFound, InvalidArgument (not a dir) or OSError on failure."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    fd = _syscall()(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        os.fsencode(path or "."),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            raise Unavailable("copying needs openat2 (Linux ≥ 5.6)")
        if err == errno.ENOENT:
            raise NotFound(f"no such file or directory: {path}", path=path)
        if err == errno.ENOTDIR:
            raise InvalidArgument(f"not a directory: {path}", path=path)
        raise OSError(err, os.strerror(err), path)
    return fd


def tar_path(root: Path, path: str, out: Sink, *, root_name: str = "") -> int:
    """Write a tar of ``path`` inside the rootfs ``root`` to ``out`` (``docker cp CONTAINER:PATH -``).

    ``path`` is resolved as the container sees it: symlinks followed inside ``root`` (an absolute
    target starts at ``root``), never out of it. Like docker: the last component is archived as
    itself (a symlink stays a symlink) under its base name; ``dir/`` follows it; ``dir/.`` (and
    ``/``) archive what is inside, without the dir itself. With ``root_name`` (``root`` is a mount
    point and ``path`` is ``/``) the root itself is archived under that name. Returns the bytes written.
    """
    tw = _TarWriter(out)
    p = "/" + path.lstrip("/")
    follow = p.endswith("/") or posixpath.basename(p) == ".."
    name = posixpath.basename(posixpath.normpath(p))
    with _opendir(root) as root_fd:
        if root_name and p == "/":  # a mount point, under the name its target has
            with _owned(os.dup(root_fd)) as d:
                _tar_tree(tw, _Entry(root_name, root_name, os.fstat(d), d), d)
        elif p.endswith("/.") or not name:  # the contents of a dir, without the dir
            with _owned(_open_in_root(root_fd, p, _DIR_FLAGS & ~os.O_NOFOLLOW)) as d:
                for e in _walk(d):
                    tw.entry(e.rel, e)
        elif follow:  # the dir the path leads to, under its name
            with _owned(_open_in_root(root_fd, p, _DIR_FLAGS & ~os.O_NOFOLLOW)) as d:
                _tar_tree(tw, _Entry(name, name, os.fstat(d), d), d)
        else:  # the last component itself
            with _owned(_open_in_root(root_fd, posixpath.dirname(p), os.O_PATH | os.O_DIRECTORY)) as pd:
                try:
                    st = os.stat(name, dir_fd=pd, follow_symlinks=False)
                except FileNotFoundError:
                    raise NotFound(f"no such file or directory: {path}", path=path) from None
                top = _Entry(name, name, st, pd)
                if stat.S_ISDIR(st.st_mode):
                    with _owned(os.open(name, _DIR_FLAGS, dir_fd=pd)) as d:
                        _tar_tree(tw, top, d)
                else:
                    tw.entry(name, top)
    return tw.close()[1]


def _tar_tree(tw: _TarWriter, top: _Entry, fd: int) -> None:
    tw.entry(top.rel, top)
    for e in _walk(fd, top.rel + "/"):
        tw.entry(e.rel, e)


def untar_into(root: Path, dest: str, chunks: Iterable[bytes], *, keep_owner: bool = False) -> int:
    """Extract the tar in ``chunks`` into dir ``dest`` of the rootfs ``root`` (``docker cp - C:DEST``).

    Contained like :func:`tar_path`: ``dest`` and every member's parent are resolved inside
    ``root``; a member name with ``..`` is refused (InvalidArgument, members before it stay
    written); an existing symlink at a member's place is replaced, never written through. Device
    nodes are skipped. Owners are the container's root unless ``keep_owner`` (``docker cp -a``).
    Returns how many members were written.
    """
    written = 0
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    base = "/" + dest.lstrip("/")
    with _opendir(root) as root_fd:
        os.close(_open_in_root(root_fd, base, os.O_PATH | os.O_DIRECTORY))  # NotFound / InvalidArgument
        stream = io.BufferedReader(ChunkReader(chunks), _BUFSIZE)
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tf:
                for m in tf:
                    parts = [c for c in m.name.split("/") if c not in ("", ".")]
                    if ".." in parts:
                        raise InvalidArgument(
                            f"archive member {m.name!r} leaves the destination", member=m.name
                        )
                    if not parts or m.ischr() or m.isblk():
                        continue
                    parent = posixpath.join(base, *parts[:-1])
                    with _owned(_mkdirs_in_root(root_fd, parent)) as pd:
                        if _extract_one(tf, m, root_fd, base, pd, parts[-1], keep_owner):
                            written += 1
                            if m.isdir():
                                dirs.append((posixpath.join(parent, parts[-1]), m))
        except tarfile.TarError as e:
            raise InvalidArgument(f"not a valid tar archive: {e}") from e
        for path, m in reversed(dirs):  # dir times last: extracting their contents moved them
            with (
                contextlib.suppress(OSError, NotFound),
                _owned(_open_in_root(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)) as d,
            ):
                os.utime(d, (m.mtime, m.mtime))
    return written


def _mkdirs_in_root(root_fd: int, path: str) -> int:
    """An O_PATH fd of dir ``path`` inside root, creating missing dirs (0755) like ``mkdir -p``."""
    try:
        return _open_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY)
    except NotFound:
        pass
    parent, name = posixpath.split(path.rstrip("/"))
    with _owned(_mkdirs_in_root(root_fd, parent)) as pd:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=pd)
            os.chmod(name, 0o755, dir_fd=pd)  # 0755 whatever the service's umask (077)
        return _open_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY)


def _clear(name: str, dir_fd: int, keep_dir: bool) -> bool:
    """Remove what is at ``name`` unless it is a dir and ``keep_dir``; True if a dir stays."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        raise InvalidArgument(f"cannot overwrite directory {name!r} with a non-directory", name=name)
    os.unlink(name, dir_fd=dir_fd)
    return False


def _extract_one(
    tf: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int, base: str, pfd: int, name: str, keep_owner: bool
) -> bool:
    mode = m.mode & 0o7777
    if m.isdir():
        if not _clear(name, pfd, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        try:
            if keep_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return True
    _clear(name, pfd, keep_dir=False)
    if m.isreg():
        src = tf.extractfile(m)
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd
        )
        try:
            if src is not None:
                while chunk := src.read(_BUFSIZE):
                    os.write(fd, chunk)
            if keep_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, mode)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        return True
    if m.issym():
        os.symlink(m.linkname, name, dir_fd=pfd)
    elif m.islnk():
        parts = [c for c in m.linkname.split("/") if c not in ("", ".")]
        if not parts or ".." in parts:
            raise InvalidArgument(f"hard link {m.name!r} points outside the archive", member=m.name)
        src_parent = posixpath.join(base, *parts[:-1])
        with _owned(_open_in_root(root_fd, src_parent, os.O_PATH | os.O_DIRECTORY)) as s:
            os.link(parts[-1], name, src_dir_fd=s, dst_dir_fd=pfd, follow_symlinks=False)
        return True
    elif m.isfifo():
        os.mkfifo(name, mode, dir_fd=pfd)
    else:
        return False
    if keep_owner:
        os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
    if not m.issym():
        os.chmod(name, mode, dir_fd=pfd)
    os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
    return True
