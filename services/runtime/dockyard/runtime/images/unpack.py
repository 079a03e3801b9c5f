"""Unpack one image layer (a tar, plain or compressed) into a directory an overlay can use as a lower.

    <dest>.tmp-<random>/          the unpack happens here, next to dest…
    <dest>/                       …and is renamed into place only when it succeeded: a failure
                                  (a hostile member, a truncated stream) leaves nothing behind

The tar is read once, in stream mode (``tarfile`` ``r|``), never buffered whole: gzip is
decompressed on the fly, zstd too when the ``zstandard`` module is importable.

Containment — a layer is untrusted input, and the unpack runs as root of the node's user
namespace, which owns every file of every image:

* member names that are absolute or hold a ``..`` component are refused (InvalidArgument naming
  the member), as are ids above 65535 (the namespace maps no more);
* nothing is ever written *through* a symlink: every parent directory of a member is opened
  component by component with ``O_NOFOLLOW | O_DIRECTORY`` relative to the previous one, and the
  member is created relative to that fd with ``O_EXCL``/``O_NOFOLLOW`` (``a -> /tmp`` then
  ``a/evil`` is refused, not written to ``/tmp/evil``);
* symlinks are created with their target as written (an absolute target is legitimate: the
  container resolves it in its own root) and are never followed here;
* a hardlink may only name a member already extracted from this same layer;
* character and block devices are skipped with a warning (rootless cannot create them; runc
  provides ``/dev``); fifos are made;
* setuid/setgid bits are kept (images need ``su``, ``ping``). This is safe only because the
  store root is mode 0700: no other host user can reach those files (``ImageStore`` ensures it);
* extended attributes: only ``user.*`` from PAX ``SCHILY.xattr.`` headers, except
  ``user.overlay.*`` and ``user.fuseoverlayfs.*`` — the overlay reads those as its own metadata
  (``userxattr`` mounts), so a layer must not be able to forge them.

OCI whiteouts become the overlay format: ``.wh.NAME`` → a character device 0:0 named ``NAME``;
``.wh..wh..opq`` → ``user.overlay.opaque=y`` on its directory (``trusted.overlay.*`` cannot be
set inside a user namespace; kernel overlay mounted with ``userxattr`` and fuse-overlayfs both
read the ``user.`` form).

Ownership (``lchown``), modes and mtimes are kept numerically. Directory modes and mtimes are
applied last, once everything inside them is written. Before the rename the filesystem is
synced (``syncfs``), so a layer that is visible survives power loss.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

import structlog

from dockyard.core.errors import AlreadyExists, InvalidArgument

log = structlog.get_logger("dockyard.runtime.images")

CHUNK_SIZE = 1 << 20
MAX_ID = 65535
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "user.overlay.opaque"
_FORBIDDEN_XATTR_PREFIXES = ("user.overlay.", "user.fuseoverlayfs.")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def unpack_layer(blob: BinaryIO | Path, dest: Path, *, diff_id: str | None = None) -> int:
    """Unpack the layer tar ``blob`` (a stream or a file path) into the new directory ``dest``.

    Returns the unpacked size (bytes of regular files; hardlinks count once). ``dest`` must not
    exist (AlreadyExists); its parent must. With ``diff_id`` the uncompressed stream must hash
    to it. Raises InvalidArgument for a hostile, broken or mismatching tar, leaving nothing
    behind. Cost: one streaming pass over the tar, one ``syncfs``.
    """
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise AlreadyExists(f"{dest} exists", path=str(dest))
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:12]}"
    os.mkdir(tmp, 0o755)
    os.chmod(tmp, 0o755)  # '/' of the layer (unless the tar says): not the service's umask 077
    try:
        with contextlib.ExitStack() as stack:
            raw: IO[bytes] = stack.enter_context(open(blob, "rb")) if isinstance(blob, Path) else blob
            decompressed = _decompressed(raw)
            stack.callback(decompressed.close)  # not ``raw``: the caller's stream stays open
            stream = _Hashing(decompressed)
            extractor = stack.enter_context(_Extractor(tmp))
            try:
                with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tar:  # type: ignore[call-overload]
                    for member in tar:
                        extractor.add(tar, member)
                stream.drain()  # the end-of-archive padding belongs to the diff id too
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise InvalidArgument(f"layer is not a valid tar: {exc}") from exc
            if diff_id is not None and stream.digest != diff_id:
                raise InvalidArgument(
                    f"layer content is {stream.digest}, not the diff id {diff_id} its image config names",
                    diff_id=diff_id,
                )
            extractor.finish()
            size = extractor.size
        _syncfs(tmp)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return size


class _Hashing:
    """A read-only stream that hashes (sha256) what passes through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK_SIZE):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _Prefixed(io.RawIOBase):
    """A readable stream that returns ``head`` and then the rest of ``fh`` (magic sniffing)."""

    def __init__(self, head: bytes, fh: IO[bytes]) -> None:
        self._head = head
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._fh.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    """``raw`` decompressed according to its magic bytes (gzip, zstd) or as is."""
    head = raw.read(4)
    stream: IO[bytes] = io.BufferedReader(_Prefixed(head, raw), CHUNK_SIZE)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            raise InvalidArgument(
                "layer is zstd-compressed and this node cannot read zstd (install the zstandard module)"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(stream)  # type: ignore[no-any-return,unused-ignore]
    return stream


def clean_name(name: str) -> str:
    """A member name made relative and normal; InvalidArgument if absolute or with ``..``.

    ``./a//b/`` → ``a/b``; the root itself (``./``) → ``""``.
    """
    if name.startswith("/"):
        raise InvalidArgument(f"layer member {name[:300]!r} has an absolute path", member=name[:300])
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"layer member {name[:300]!r} escapes the layer (..)", member=name[:300])
    if "\x00" in name:
        raise InvalidArgument(f"layer member {name[:300]!r} has a NUL byte", member=name[:300])
    return "/".join(parts)


class _Extractor:
    """Creates members relative to directory fds opened without following symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.size = 0
        self._root_fd = os.open(root, _DIR_FLAGS)
        self._dir_fds: dict[str, int] = {}  # parent path → fd of a real directory we opened
        self._extracted: set[str] = set()  # non-directory members created in this layer
        self._dirs: dict[str, tarfile.TarInfo] = {}  # metadata applied at the end (mode, mtime)

    def __enter__(self) -> _Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_fds()
        os.close(self._root_fd)

    def _drop_fds(self, under: str | None = None) -> None:
        """Close cached directory fds: all, or those of ``under`` and below it."""
        for rel in list(self._dir_fds):
            if under is None or rel == under or rel.startswith(under + "/"):
                os.close(self._dir_fds.pop(rel))

    def _bound_fds(self) -> None:
        """Called between members only (an fd in use by the current member is never closed)."""
        if len(self._dir_fds) >= 256:
            self._drop_fds()

    # -- walking ---------------------------------------------------------------------------

    def _parent_fd(self, rel: str, member: str) -> int:
        """The fd of directory ``rel`` (created, root-owned 0755, if missing); never via a symlink."""
        if not rel:
            return self._root_fd
        cached = self._dir_fds.get(rel)
        if cached is not None:
            return cached
        head, _, leaf = rel.rpartition("/")
        parent = self._parent_fd(head, member)
        try:
            fd = os.open(leaf, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(leaf, 0o755, dir_fd=parent)
            os.chmod(leaf, 0o755, dir_fd=parent)  # an implied parent is 0755 whatever our umask
            fd = os.open(leaf, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(
                    f"layer member {member[:300]!r} is under {rel!r}, which is not a directory "
                    "(a symlink or a file): refusing to write through it",
                    member=member[:300],
                ) from None
            raise
        self._dir_fds[rel] = fd
        return fd

    def _clear(self, parent_fd: int, leaf: str, rel: str, *, keep_dir: bool) -> bool:
        """Remove what is at ``leaf`` (a later member replaces an earlier one). True if kept as dir."""
        try:
            st = os.lstat(leaf, dir_fd=parent_fd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._drop_fds(under=rel)  # they would point into the removed tree
            shutil.rmtree(leaf, dir_fd=parent_fd)
            prefix = rel + "/"
            self._extracted = {p for p in self._extracted if not p.startswith(prefix)}
            self._dirs = {p: t for p, t in self._dirs.items() if p != rel and not p.startswith(prefix)}
        else:
            os.unlink(leaf, dir_fd=parent_fd)
        self._extracted.discard(rel)
        return False

    # -- members ---------------------------------------------------------------------------

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self._bound_fds()
        rel = clean_name(member.name)
        if member.uid > MAX_ID or member.gid > MAX_ID or member.uid < 0 or member.gid < 0:
            raise InvalidArgument(
                f"layer member {member.name[:300]!r} is owned by {member.uid}:{member.gid}; "
                f"this node maps ids 0..{MAX_ID} only",
                member=member.name[:300],
            )
        if not rel:  # "./": the layer's root directory itself
            if member.isdir():
                self._dirs[""] = member
            return
        head, _, leaf = rel.rpartition("/")
        if leaf.startswith(WHITEOUT_PREFIX):
            self._whiteout(head, leaf, member)
            return
        parent = self._parent_fd(head, member.name)
        if member.isdir():
            if not self._clear(parent, leaf, rel, keep_dir=True):
                os.mkdir(leaf, 0o700, dir_fd=parent)
            os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            self._set_xattrs(leaf, parent, member, is_dir=True)
            self._dirs[rel] = member
            return
        if member.islnk():
            self._hardlink(parent, leaf, rel, member)
            return
        if member.ischr() or member.isblk():
            log.warning(
                "layer_device_skipped", member=member.name, major=member.devmajor, minor=member.devminor
            )
            return
        self._clear(parent, leaf, rel, keep_dir=False)
        if member.isreg():
            self._regular(tar, parent, leaf, member)
        elif member.issym():
            os.symlink(member.linkname, leaf, dir_fd=parent)
            os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            _utime(leaf, parent, member.mtime)
        elif member.isfifo():
            os.mkfifo(leaf, 0o600, dir_fd=parent)
            self._meta_by_name(parent, leaf, member)
        else:
            log.warning("layer_member_skipped", member=member.name, type=member.type.decode(errors="replace"))
            return
        self._extracted.add(rel)

    def _regular(self, tar: tarfile.TarFile, parent: int, leaf: str, member: tarfile.TarInfo) -> None:
        fd = os.open(
            leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
        )
        try:
            src = tar.extractfile(member)
            if src is not None:
                with src, os.fdopen(os.dup(fd), "wb", closefd=True) as out:
                    shutil.copyfileobj(src, out, CHUNK_SIZE)
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid/setgid
            self._set_xattrs(fd, None, member, is_dir=False)
            os.utime(fd, ns=(_ns(member.mtime), _ns(member.mtime)))
        finally:
            os.close(fd)
        self.size += member.size

    def _meta_by_name(self, parent: int, leaf: str, member: tarfile.TarInfo) -> None:
        os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(leaf, member.mode & 0o7777, dir_fd=parent)  # not a symlink: we just made it
        _utime(leaf, parent, member.mtime)

    def _hardlink(self, parent: int, leaf: str, rel: str, member: tarfile.TarInfo) -> None:
        target = clean_name(member.linkname.lstrip("/"))
        if target not in self._extracted:
            raise InvalidArgument(
                f"layer member {member.name[:300]!r} is a hardlink to {member.linkname[:300]!r}, "
                "which is not a file earlier in this layer",
                member=member.name[:300],
            )
        if target == rel:
            return  # a link to itself: nothing to do
        self._clear(parent, leaf, rel, keep_dir=False)
        thead, _, tleaf = target.rpartition("/")
        tparent = self._parent_fd(thead, member.name)
        try:
            os.link(tleaf, leaf, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:  # the target was under a directory this member replaced
            raise InvalidArgument(
                f"layer member {member.name[:300]!r} is a hardlink to a removed file",
                member=member.name[:300],
            ) from None
        self._extracted.add(rel)

    def _whiteout(self, head: str, leaf: str, member: tarfile.TarInfo) -> None:
        parent = self._parent_fd(head, member.name)
        if leaf == OPAQUE_MARKER:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        name = leaf[len(WHITEOUT_PREFIX) :]
        if name.startswith(WHITEOUT_PREFIX):  # .wh..wh.plnk and other AUFS metadata: meaningless here
            return
        if name in ("", ".", ".."):
            raise InvalidArgument(f"layer member {member.name[:300]!r} is a malformed whiteout")
        rel = f"{head}/{name}" if head else name
        self._clear(parent, name, rel, keep_dir=False)
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def _set_xattrs(
        self, target: int | str, parent: int | None, member: tarfile.TarInfo, *, is_dir: bool
    ) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            if not name.startswith("user.") or name.startswith(_FORBIDDEN_XATTR_PREFIXES):
                continue
            data = value.encode("utf-8", "surrogateescape")
            if isinstance(target, int):
                os.setxattr(target, name, data)
            else:  # a directory by name: open it (no symlink) to set on the fd
                fd = os.open(target, _DIR_FLAGS, dir_fd=parent)
                try:
                    os.setxattr(fd, name, data)
                finally:
                    os.close(fd)

    def finish(self) -> None:
        """Apply directory modes and mtimes, deepest first (writing a child changes a dir's mtime)."""
        self._drop_fds()
        for rel in sorted(self._dirs, key=lambda p: p.count("/") + (1 if p else 0), reverse=True):
            self._bound_fds()
            member = self._dirs[rel]
            if not rel:
                os.chown(self._root_fd, member.uid, member.gid)
                os.chmod(self._root_fd, member.mode & 0o7777)
                os.utime(self._root_fd, ns=(_ns(member.mtime), _ns(member.mtime)))
                continue
            head, _, leaf = rel.rpartition("/")
            parent = self._parent_fd(head, member.name)
            os.chmod(leaf, member.mode & 0o7777, dir_fd=parent)
            _utime(leaf, parent, member.mtime)
        self._drop_fds()


def _ns(mtime: float) -> int:
    return int(mtime * 1_000_000_000)


def _utime(leaf: str, parent: int, mtime: float) -> None:
    os.utime(leaf, ns=(_ns(mtime), _ns(mtime)), dir_fd=parent, follow_symlinks=False)


@functools.cache
def _syncfs_fn() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (every file of a fresh layer, in one call)."""
    fn = _syncfs_fn()
    if fn is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fn(fd)
    finally:
        os.close(fd)
