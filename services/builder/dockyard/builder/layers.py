"""The build context on disk, and the reproducible layer tars COPY and ADD make from it.

The context arrives as a tar stream (the CLI sends the directory filtered by ``.dockerignore``)
and is unpacked once into the build's scratch directory by :func:`extract_context`, which never
writes outside it (no absolute names, no ``..``, nothing through a symlink the tar made, no
device nodes) and holds one 1 MiB buffer whatever the context's size.

A COPY layer (:func:`copy_layer`) is written from files that are already on disk — the context, or
a stage's files fetched for ``COPY --from`` (:func:`reroot`) — so that the same inputs always make
the same bytes:

- PAX format, entries sorted by path, every dir before its contents, ``uname``/``gname`` empty;
- the parents of the destination as dirs (0755, 0:0), then what is copied;
- owners 0:0 for context files (docker's rule) or ``--chown`` ids; a stage's files keep theirs;
- ``--chmod`` applied to every entry copied; modes otherwise as on disk;
- every mtime clamped to ``epoch`` (SOURCE_DATE_EPOCH; 0 by default, see ``engine.py``).

The layer's sha256 is computed while it is written: it is the layer's diff_id, and since the
bytes depend only on the inputs it is also the content key of the step's cache entry (a
hash-only pass on a rebuild, the real write only on a miss).
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.streams import ChunkReader

BUF = 1 << 20
_TYPES = {
    stat.S_IFREG: tarfile.REGTYPE,
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}


# --- the context ---------------------------------------------------------------------------------------


def _safe_parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise InvalidArgument(f"build context: member {name!r} leaves the context")
    return parts


def extract_context(chunks: Iterable[bytes], root: Path) -> tuple[int, int]:
    """Unpack the context tar in ``chunks`` into ``root`` (created); ``(files, bytes)``.

    Modes are kept (not owners: the builder is an ordinary user); mtimes do not matter (COPY
    clamps them). InvalidArgument for a member that would leave ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    links: set[str] = set()
    dirs: list[tuple[Path, int]] = []
    files = total = 0
    stream = io.BufferedReader(ChunkReader(chunks), BUF)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            for m in tf:
                parts = _safe_parts(m.name)
                if not parts:
                    continue
                rel = "/".join(parts)
                for i in range(1, len(parts)):
                    if "/".join(parts[:i]) in links:
                        raise InvalidArgument(f"build context: member {m.name!r} is below a symlink")
                target = root.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                if m.isdir():
                    target.mkdir(exist_ok=True)
                    dirs.append((target, m.mode & 0o7777))
                    continue
                if target.is_symlink() or target.exists():
                    if target.is_dir() and not target.is_symlink():
                        raise InvalidArgument(f"build context: {rel!r} is both a dir and a file")
                    target.unlink()
                if m.isreg():
                    src = tf.extractfile(m)
                    with open(target, "wb") as out:
                        while src is not None and (block := src.read(BUF)):
                            out.write(block)
                    os.chmod(target, m.mode & 0o7777)
                    files += 1
                    total += m.size
                elif m.issym():
                    os.symlink(m.linkname, target)
                    links.add(rel)
                elif m.islnk():
                    lparts = _safe_parts(m.linkname)
                    if any("/".join(lparts[:i]) in links for i in range(1, len(lparts) + 1)):
                        raise InvalidArgument(f"build context: hard link {m.name!r} goes through a symlink")
                    os.link(root.joinpath(*lparts), target)
                # devices, fifos: not part of a context
    except tarfile.TarError as exc:
        raise InvalidArgument(f"build context is not a valid tar: {exc}") from None
    for path, mode in reversed(dirs):
        os.chmod(path, mode | 0o700)  # we must still read it
    return files, total


# --- sources ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One file or dir to copy: ``path`` on disk, and whether its contents (not itself) go."""

    path: Path
    name: str  # the base name it gets when copied into a dir
    contents: bool


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def context_sources(root: Path, patterns: Iterable[str], what: str = "COPY") -> list[Source]:
    """The context entries ``patterns`` name (paths or globs, relative to the context root).

    A dir names its contents. NotFound (docker's "not found" line) when a pattern matches nothing.
    """
    out: list[Source] = []
    for raw in patterns:
        rel = posixpath.normpath("/" + raw).lstrip("/")
        if _has_glob(rel):
            found = sorted(glob.glob(rel, root_dir=root, include_hidden=True))
            if not found:
                raise NotFound(f'{what} failed: no source files were specified: "{raw}" matched nothing')
        else:
            found = [rel]
        for item in found:
            path = root / item if item else root
            if not os.path.lexists(path):
                raise NotFound(
                    f'{what} failed: file not found in build context or excluded by .dockerignore: "{raw}"'
                )
            is_dir = path.is_dir() and not path.is_symlink()
            out.append(Source(path, posixpath.basename(item) or ".", is_dir))
    return out


def destination(dest: str, workdir: str, sources: int, file_source: bool) -> tuple[str, bool]:
    """The absolute destination and whether it is a dir into which sources go by name.

    As docker: a dest ending in ``/`` (or ``.``) is a dir; several sources need one; a relative
    dest is below the WORKDIR.
    """
    as_dir = dest.endswith("/") or dest in (".", "") or dest.endswith("/.") or sources > 1
    if not file_source:
        as_dir = True
    path = posixpath.normpath(posixpath.join(workdir or "/", dest or "."))
    if sources > 1 and not (dest.endswith("/") or dest.endswith("/.") or dest == "."):
        raise InvalidArgument(
            "When using COPY with more than one source file, the destination must be a directory "
            f"and end with a /: {dest}"
        )
    return path, as_dir


# --- writing ---------------------------------------------------------------------------------------------


class HashSink:
    """Where a layer goes: hashed always, and written to ``out`` when given (a file, a queue)."""

    def __init__(self, out: Callable[[bytes], object] | None = None) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self._out is not None:
            self._out(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int | None = 0  # None: keep the source's
    gid: int | None = 0


def parse_chown(text: str) -> Owner:
    """``--chown=uid[:gid]`` (numbers only; a name needs the image's passwd: not supported)."""
    if not text:
        return Owner()
    user, _, group = text.partition(":")
    try:
        uid = int(user)
        gid = int(group) if group else uid
    except ValueError:
        raise InvalidArgument(f"--chown={text}: only numeric ids are supported (uid[:gid])") from None
    if uid < 0 or gid < 0:
        raise InvalidArgument(f"--chown={text}: ids must not be negative")
    return Owner(uid, gid)


def parse_chmod(text: str) -> int | None:
    if not text:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        raise InvalidArgument(f"--chmod={text}: only octal modes are supported") from None
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"--chmod={text}: invalid mode")
    return mode


class LayerWriter:
    """Writes one reproducible layer (see the module docstring) to a :class:`HashSink`."""

    def __init__(self, sink: HashSink, epoch: int) -> None:
        self.sink = sink
        self.epoch = epoch
        self.tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]  # noqa: SIM115
        self._seen: set[str] = set()
        self._links: dict[tuple[int, int], str] = {}

    def _info(
        self, name: str, kind: bytes, mode: int, mtime: float, owner: Owner, st_uid: int = 0, st_gid: int = 0
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode & 0o7777
        info.mtime = min(int(mtime), self.epoch)
        info.uid = st_uid if owner.uid is None else owner.uid
        info.gid = st_gid if owner.gid is None else owner.gid
        info.uname = info.gname = ""
        return info

    def parents(self, path: str) -> None:
        """Dir entries for every ancestor of absolute ``path`` (not for ``/``, nor ``path``)."""
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts)):
            self.dir("/".join(parts[:i]), 0o755, Owner())

    def dir(self, rel: str, mode: int, owner: Owner) -> None:
        if rel in self._seen:
            return
        self._seen.add(rel)
        self.tar.addfile(self._info(rel, tarfile.DIRTYPE, mode, 0, owner))

    def data(self, rel: str, data: bytes, mode: int, owner: Owner) -> None:
        self._seen.add(rel)
        info = self._info(rel, tarfile.REGTYPE, mode, 0, owner)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def path(
        self, rel: str, path: Path, owner: Owner, chmod: int | None, st: os.stat_result | None = None
    ) -> None:
        """One entry from disk (not followed if a symlink) as ``rel``."""
        st = st or os.lstat(path)
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            return  # sockets, devices: not copied
        mode = stat.S_IMODE(st.st_mode) if chmod is None else chmod
        if kind == tarfile.DIRTYPE:
            if rel in self._seen:
                return
            self._seen.add(rel)
        info = self._info(rel, kind, mode, st.st_mtime, owner, st.st_uid, st.st_gid)
        if kind == tarfile.SYMTYPE:
            info.linkname = os.readlink(path)
            self.tar.addfile(info)
            return
        if kind == tarfile.REGTYPE and st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self.tar.addfile(info)
                return
        if kind == tarfile.REGTYPE:
            info.size = st.st_size
            with open(path, "rb") as fh:
                self.tar.addfile(info, fh)
            return
        self.tar.addfile(info)

    def tree(self, rel: str, root: Path, owner: Owner, chmod: int | None, include_root: bool) -> None:
        """``root`` (a dir) as ``rel``: itself when ``include_root``, then everything below, sorted."""
        if include_root:
            self.path(rel, root, owner, chmod)
        for entry_rel, path in walk(root):
            self.path(posixpath.join(rel, entry_rel) if rel else entry_rel, path, owner, chmod)

    def close(self) -> None:
        self.tar.close()


def walk(root: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """Every entry below ``root`` (symlinks not followed), sorted by path, dirs before contents."""
    for name in sorted(os.listdir(root)):
        path = root / name
        rel = prefix + name
        yield rel, path
        if path.is_dir() and not path.is_symlink():
            yield from walk(path, rel + "/")


def copy_layer(
    writer: LayerWriter,
    sources: list[Source],
    dest: str,
    as_dir: bool,
    owner: Owner,
    chmod: int | None,
) -> None:
    """Write ``sources`` copied to ``dest`` (absolute) as docker's COPY places them."""
    target = dest.strip("/")
    writer.parents(dest)
    for src in sources:
        if src.contents:
            if target:
                writer.dir(
                    target, chmod if chmod is not None else 0o755, Owner() if owner.uid is None else owner
                )
            writer.tree(target, src.path, owner, chmod, include_root=False)
            continue
        rel = posixpath.join(target, src.name) if as_dir else target
        if as_dir and target:
            writer.dir(target, 0o755, Owner() if owner.uid is None else owner)
        writer.parents("/" + rel)
        writer.path(rel, src.path, owner, chmod)


def copy_from_tar(
    writer: LayerWriter,
    tar_stream: IO[bytes],
    dest: str,
    as_dir: bool,
    owner: Owner,
    chmod: int | None,
) -> None:
    """Re-write a ``docker cp``-style tar of one source (its top entry named by its base name)
    as COPY --from places it at ``dest``: a dir's contents into ``dest``, a file at ``dest`` (or
    ``dest/name`` when ``as_dir``). Streams; owners kept unless ``--chown``.
    """
    target = dest.strip("/")
    writer.parents(dest)
    top: str | None = None
    top_is_dir = False
    with tarfile.open(fileobj=tar_stream, mode="r|") as tf:
        for m in tf:
            parts = _safe_parts(m.name)
            if not parts:
                continue
            if top is None:
                top, top_is_dir = parts[0], m.isdir()
                if top_is_dir:
                    if target:
                        mode = chmod if chmod is not None else m.mode
                        writer.dir(target, mode, _keep(owner, m))
                    continue
                rel = posixpath.join(target, top) if as_dir else target
                if as_dir and target:
                    writer.dir(target, 0o755, Owner() if owner.uid is None else owner)
                writer.parents("/" + rel)
            else:
                below = "/".join(parts[1:]) if parts[0] == top else "/".join(parts)
                rel = posixpath.join(target, below) if target else below
            link = _rename(m.linkname, top, target, as_dir, top_is_dir) if m.islnk() else ""
            _emit_member(writer, tf, m, rel, owner, chmod, link)
    if top is None:
        raise NotFound("COPY --from: the source is empty")


def _keep(owner: Owner, m: tarfile.TarInfo) -> Owner:
    return Owner(m.uid if owner.uid is None else owner.uid, m.gid if owner.gid is None else owner.gid)


def _rename(name: str, top: str | None, target: str, as_dir: bool, top_is_dir: bool) -> str:
    parts = _safe_parts(name)
    if top_is_dir:
        below = "/".join(parts[1:])
        return posixpath.join(target, below) if target else below
    return posixpath.join(target, parts[0]) if as_dir else target


def _emit_member(
    writer: LayerWriter,
    tf: tarfile.TarFile,
    m: tarfile.TarInfo,
    rel: str,
    owner: Owner,
    chmod: int | None,
    hardlink: str,
) -> None:
    if m.ischr() or m.isblk():
        return
    mode = m.mode if chmod is None else chmod
    info = writer._info(rel, m.type, mode, m.mtime, _keep(owner, m))
    if m.isdir():
        if rel in writer._seen:
            return
        writer._seen.add(rel)
    if m.issym():
        info.linkname = m.linkname
    elif m.islnk():
        info.linkname = hardlink
    if m.isreg():
        info.size = m.size
        writer.tar.addfile(info, tf.extractfile(m))
    else:
        writer.tar.addfile(info)
