"""The build context on disk, and the reproducible layer tars COPY and ADD make from it.

The context arrives as a tar stream (the CLI sends the directory filtered by ``.dockerignore``)
and is unpacked once into the build's scratch directory by :func:`extract_context`, which never
writes outside it (no absolute names, no ``..``, nothing through a symlink the tar made, no
device nodes) and holds one 1 MiB buffer whatever the context's size.

A COPY layer (:func:`copy_layer`) is written from files that are already on disk — the context, or
a stage's files fetched for ``COPY --from`` (:func:`copy_from_tar`) — so that the same inputs always make
the same bytes:

- PAX format, entries sorted by path, every dir before its contents, ``uname``/``gname`` empty;
- the parents of the destination as dirs (0755, 0:0), then what is copied;
- owners 0:0 for context files (docker's rule) or ``--chown`` ids; a stage's files keep theirs;
- ``--chmod`` (octal, or symbolic per entry: :class:`Chmod`) applied to every entry copied;
  modes otherwise as on disk;
- every mtime clamped to ``epoch`` (SOURCE_DATE_EPOCH; 0 by default, see ``engine.py``).

ADD also extracts a context file that is a tar — plain, gzip, bzip2 or xz, told by its bytes
(:func:`is_archive`) — into the destination (:func:`unpack_archive`): in the archive's order,
its owners kept unless ``--chown``, times clamped, hostile entries refused. ``COPY --from`` with
a wildcard reads the tar of the dir above it and copies the entries that match, Go's
``filepath.Match`` part by part (:func:`split_glob`, :func:`tar_sources`).

The layer's sha256 is computed while it is written: it is the layer's diff_id, and since the
bytes depend only on the inputs it is also the content key of the step's cache entry (a
hash-only pass on a rebuild, the real write only on a miss).
"""

from __future__ import annotations

import copy
import hashlib
import io
import lzma
import os
import posixpath
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, NamedTuple

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.fsutil import follow_in_root, lstat_under
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
    root.chmod(0o755)  # what COPY . sees of '/': not the service's umask 077
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
                if not target.parent.is_dir():  # implied parents are 0755, as docker's, whatever our umask
                    for i in range(1, len(parts)):
                        implied = root.joinpath(*parts[:i])
                        if not implied.is_dir():
                            implied.mkdir()
                            implied.chmod(0o755)
                if m.isdir():
                    if target.is_symlink():  # mkdir(exist_ok) and the chmod after would go through it
                        raise InvalidArgument(f"build context: dir {m.name!r} over a symlink")
                    target.mkdir(exist_ok=True)
                    dirs.append((target, m.mode & 0o7777))
                    continue
                if target.is_symlink() or target.exists():
                    if target.is_dir() and not target.is_symlink():
                        raise InvalidArgument(f"build context: {rel!r} is both a dir and a file")
                    target.unlink()
                    links.discard(rel)
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
                    source = root.joinpath(*lparts)
                    if not source.is_file() or source.is_symlink():
                        raise InvalidArgument(
                            f"build context: hard link {m.name!r} to {m.linkname!r}, which is no file"
                        )
                    os.link(source, target)
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
    unpack: bool = False  # an archive ADD extracts (see is_archive)


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def context_sources(root: Path, patterns: Iterable[str], what: str = "COPY") -> list[Source]:
    """The context entries ``patterns`` name (paths or globs, relative to the context root).

    Every path is looked up inside the context, never on the host: a symlinked dir on the way is
    followed as if the context root were "/" (neither an absolute target nor ``..`` leads out:
    ``ln -s / rootlink; COPY rootlink/etc/passwd`` finds no file). A source that is itself a
    symlink is followed when it points within the context and copied as the symlink when it
    points out of it (see :func:`_reach`). A dir names its contents; its symlinks stay symlinks.
    NotFound (docker's "not found" line) when a pattern matches nothing.
    """
    out: list[Source] = []
    for raw in patterns:
        rel = posixpath.normpath("/" + raw).lstrip("/")
        if _has_glob(rel):
            found = _glob_in_root(root, rel)
            if not found:
                raise NotFound(f'{what} failed: no source files were specified: "{raw}" matched nothing')
        else:
            reached = _reach(root, rel)
            if reached is None:
                raise NotFound(
                    f'{what} failed: file not found in build context or excluded by .dockerignore: "{raw}"'
                )
            found = [(rel, *reached)]
        for name, resolved, st in found:
            is_dir = st is None or stat.S_ISDIR(st.st_mode)
            out.append(Source(root / resolved if resolved else root, posixpath.basename(name) or ".", is_dir))
    return out


def _readlink_under(top: Path) -> Callable[[str], str]:
    return lambda rel: os.readlink(top / rel)


def _reach(root: Path, name: str) -> tuple[str, os.stat_result | None] | None:
    """The context path source ``name`` stands for and its lstat (None for the root itself), or
    None when it is not there. Its dirs are followed inside the context; the source itself, when a
    symlink, is followed only if its target lies within the context by name (relative, never above
    the root) and exists there, else it is the symlink: one to an absolute path, one that climbs
    out, a dangling one."""
    lstat, readlink = lstat_under(root), _readlink_under(root)
    head, _, last = name.rpartition("/")
    parent = follow_in_root(head, lstat, readlink) if head else ("", None)
    if parent is None or (parent[1] is not None and not stat.S_ISDIR(parent[1].st_mode)):
        return None
    if not last:
        return parent
    here = posixpath.join(parent[0], last)
    st = lstat(here)
    if st is None or not stat.S_ISLNK(st.st_mode):
        return None if st is None else (here, st)
    target = readlink(here)
    if not target.startswith("/") and not _climbs_out(parent[0], target):
        followed = follow_in_root(here, lstat, readlink)
        if followed is not None:
            return followed
    return here, st


def _climbs_out(base: str, target: str) -> bool:
    """Whether ``target``, relative to the dir ``base``, names a path above the context root."""
    depth = len([p for p in base.split("/") if p])
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _glob_in_root(root: Path, pattern: str) -> list[tuple[str, str, os.stat_result | None]]:
    """``(name as matched, path reached inside the context, its lstat)`` for each entry ``pattern``
    matches part by part (Go's filepath.Match), every dir on the way followed inside the context;
    one per entry reached, sorted by name."""
    lstat, readlink = lstat_under(root), _readlink_under(root)
    level: list[tuple[str, str]] = [("", "")]  # (name so far, the dir it reached)
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        names: list[str] = []
        for name, reached in level:
            if not _has_glob(part):
                names.append(posixpath.join(name, part))
                continue
            try:
                entries = sorted(os.listdir(root / reached if reached else root))
            except (NotADirectoryError, FileNotFoundError):
                continue
            rx = _glob_regex(part)
            names += [posixpath.join(name, e) for e in entries if rx.fullmatch(e)]
        last = i == len(parts) - 1
        level = []
        for name in names:
            hit = _reach(root, name) if last else follow_in_root(name, lstat, readlink)
            if hit is not None and (last or hit[1] is None or stat.S_ISDIR(hit[1].st_mode)):
                level.append((name, hit[0]))
    seen: dict[str, tuple[str, str, os.stat_result | None]] = {}
    for name, reached in sorted(level):
        seen.setdefault(reached, (name, reached, lstat(reached) if reached else None))
    return list(seen.values())


def mark_archives(sources: list[Source]) -> list[Source]:
    """ADD's rule: every source that is a regular file holding a tar archive is extracted."""
    return [
        replace(s, unpack=True)
        if not s.contents and s.path.is_file() and not s.path.is_symlink() and is_archive(s.path)
        else s
        for s in sources
    ]


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


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) < 1 << 32 else None


def chown_names(text: str) -> tuple[bool, bool]:
    """Whether ``--chown=user[:group]`` names the user, the group (not numbers): what must be
    looked up in the destination image's ``/etc/passwd`` and ``/etc/group``."""
    if not text:
        return False, False
    user, has_group, group = text.partition(":")
    return _number(user) is None and user != "", bool(has_group) and _number(group) is None


def _ids(table: str | None, name: str) -> tuple[int, int] | None:
    """(id, gid) of ``name`` in a passwd or group file's text (the third and fourth fields)."""
    for line in (table or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and (first := _number(fields[2])) is not None:
            return first, (_number(fields[3]) if len(fields) > 3 else None) or 0
    return None


def parse_chown(text: str, passwd: str | None = None, group: str | None = None) -> Owner:
    """``--chown=user[:group]`` as BuildKit resolves it: numbers as they are (a lone uid is the
    gid too), a user name through ``passwd`` (its uid and primary gid), a group name through
    ``group`` — the texts of the destination image's files (see :func:`chown_names`). An empty
    user is 0. Unlike BuildKit (which quietly uses 0), an unknown name is InvalidArgument.
    """
    if not text:
        return Owner()
    user, has_group, grp = text.partition(":")
    if not user:
        uid = gid = 0
    elif (number := _number(user)) is not None:
        uid = gid = number
    elif (found := _ids(passwd, user)) is not None:
        uid, gid = found
    else:
        raise InvalidArgument(f"--chown={text}: unknown user {user!r} (not in the image's /etc/passwd)")
    if has_group:
        if (number := _number(grp)) is not None:
            gid = number
        elif (found := _ids(group, grp)) is not None:
            gid = found[0]
        else:
            raise InvalidArgument(f"--chown={text}: unknown group {grp!r} (not in the image's /etc/group)")
    return Owner(uid, gid)


_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}
_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)")
_ACTION = re.compile(r"([-+=])([ugo]|[rwxXst]*)")


@dataclass(frozen=True, slots=True)
class Chmod:
    """``--chmod``: an octal mode, or chmod(1)'s symbolic clauses (``u=rwX,go=rX``, ``+x``)
    applied to each entry's own mode — ``X`` is execute for dirs and already-executable files.
    No who means ``a`` (umask 0, as BuildKit applies it)."""

    octal: int | None = None
    clauses: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = ()

    def apply(self, mode: int, is_dir: bool) -> int:
        if self.octal is not None:
            return self.octal
        mode &= 0o7777
        for who, actions in self.clauses:
            for op, perms in actions:
                if perms in ("u", "g", "o"):  # copy another class's bits
                    shift = {"u": 6, "g": 3, "o": 0}[perms]
                    bits = ((mode >> shift) & 7) * 0o111
                else:
                    bits = 0
                    for p in perms:
                        if p == "X":
                            bits |= 0o111 if is_dir or mode & 0o111 else 0
                        else:
                            bits |= _PERM[p]
                if op == "+":
                    mode |= bits & who
                elif op == "-":
                    mode &= ~(bits & who)
                else:
                    mode = (mode & ~who) | (bits & who)
        return mode


def parse_chmod(text: str) -> Chmod | None:
    """``--chmod``: octal (``0755``, up to 07777) or symbolic (``u+x,go-w``, ``a=rX``)."""
    if not text:
        return None
    if re.fullmatch(r"[0-7]+", text):
        mode = int(text, 8)
        if mode > 0o7777:
            raise InvalidArgument(f"--chmod={text}: invalid mode (octal, at most 07777)")
        return Chmod(octal=mode)
    clauses = []
    for clause in text.split(","):
        m = _CLAUSE.fullmatch(clause)
        if m is None:
            raise InvalidArgument(f"--chmod={text}: not an octal mode nor a symbolic one like u+x,go-w")
        who = 0
        for c in m.group(1) or "a":
            who |= _WHO[c]
        clauses.append((who, tuple((a.group(1), a.group(2)) for a in _ACTION.finditer(m.group(2)))))
    return Chmod(clauses=tuple(clauses))


def mode_of(chmod: Chmod | None, mode: int, is_dir: bool) -> int:
    """The mode an entry gets: ``mode`` (its own) changed by ``--chmod`` when given."""
    return mode & 0o7777 if chmod is None else chmod.apply(mode, is_dir)


class Existing(NamedTuple):
    """A directory the parent image already has (``LayerWriter(existing=…)``, by relative path)."""

    mode: int
    owner: Owner


class LayerWriter:
    """Writes one reproducible layer (see the module docstring) to a :class:`HashSink`."""

    def __init__(self, sink: HashSink, epoch: int, existing: Mapping[str, Existing] | None = None) -> None:
        self.sink = sink
        self.epoch = epoch
        self.existing = existing or {}
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
        if rel in self.existing:  # a directory the image has keeps its owner and mode
            mode, owner = self.existing[rel]
        self.tar.addfile(self._info(rel, tarfile.DIRTYPE, mode, 0, owner))

    def data(self, rel: str, data: bytes, mode: int, owner: Owner) -> None:
        self._seen.add(rel)
        info = self._info(rel, tarfile.REGTYPE, mode, 0, owner)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def path(
        self, rel: str, path: Path, owner: Owner, chmod: Chmod | None, st: os.stat_result | None = None
    ) -> None:
        """One entry from disk (not followed if a symlink) as ``rel``."""
        st = st or os.lstat(path)
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            return  # sockets, devices: not copied
        mode = mode_of(chmod, st.st_mode, kind == tarfile.DIRTYPE)
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

    def tree(self, rel: str, root: Path, owner: Owner, chmod: Chmod | None, include_root: bool) -> None:
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
    chmod: Chmod | None,
    archive_owner: Owner = Owner(None, None),
) -> None:
    """Write ``sources`` copied to ``dest`` (absolute) as docker's COPY places them; an ADD'ed
    archive (``Source.unpack``) is extracted into ``dest`` with ``archive_owner`` (None: the
    archive's ids, docker's rule without ``--chown``)."""
    target = dest.strip("/")
    writer.parents(dest)
    for src in sources:
        if src.unpack:
            unpack_archive(writer, src.path, target, archive_owner, chmod, src.name)
            continue
        if src.contents:
            if target:
                writer.dir(target, mode_of(chmod, 0o755, True), Owner() if owner.uid is None else owner)
            writer.tree(target, src.path, owner, chmod, include_root=False)
            continue
        rel = posixpath.join(target, src.name) if as_dir else target
        if as_dir and target:
            writer.dir(target, 0o755, Owner() if owner.uid is None else owner)
        writer.parents("/" + rel)
        writer.path(rel, src.path, owner, chmod)


# --- ADD of an archive -----------------------------------------------------------------------------------


def is_archive(path: Path) -> bool:
    """Whether the file at ``path`` is a tar (plain, gzip, bzip2 or xz), judged by its bytes as
    docker judges it — by its first entry, not by its name. An empty tar is not an archive."""
    try:
        with tarfile.open(path, mode="r|*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return False


def unpack_archive(
    writer: LayerWriter, path: Path, target: str, owner: Owner, chmod: Chmod | None, label: str
) -> None:
    """Extract the archive at ``path`` into ``target`` (a layer path, "" = /) as ``tar -x`` would:
    archive order, owners kept unless ``owner`` sets them, times clamped like every entry, missing
    parents made, the archive's ``./`` entry giving ``target`` its mode and owner.

    Refused with InvalidArgument (one line, nothing written since the caller discards the layer):
    an absolute name or one with ``..``; an entry below a symlink the archive made; a relative
    symlink that leads out of ``target``; a hard link to an entry the archive did not make; a
    ``.wh.`` name (a layer would read it as a deletion). Device nodes are skipped (rootless).
    """
    links: set[str] = set()
    files: set[str] = set()
    started = False

    def refuse(why: str) -> InvalidArgument:
        return InvalidArgument(f"ADD {label}: {why}")

    try:
        with tarfile.open(path, mode="r|*") as tf:
            for m in tf:
                if m.name.startswith("/"):
                    raise refuse(f"entry {m.name!r} has an absolute name")
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if ".." in parts:
                    raise refuse(f"entry {m.name!r} leaves the destination")
                if not started:
                    started = True
                    if target:
                        is_root = not parts and m.isdir()
                        mode = mode_of(chmod, m.mode if is_root else 0o755, True)
                        writer.dir(target, mode, _keep(owner, m) if is_root else _or_root(owner))
                if not parts or m.ischr() or m.isblk():  # rootless: no device nodes
                    continue
                name = "/".join(parts)
                if any(p.startswith(".wh.") for p in parts):
                    raise refuse(f"entry {m.name!r}: .wh. names are layer whiteouts, not files")
                if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
                    raise refuse(f"entry {m.name!r} is below a symlink of the archive")
                hardlink = ""
                if m.issym() and not m.linkname.startswith("/"):
                    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
                    if resolved == ".." or resolved.startswith("../"):
                        raise refuse(f"symlink {m.name!r} -> {m.linkname!r} leads out of the destination")
                elif m.islnk():
                    lname = "/".join(p for p in m.linkname.split("/") if p not in ("", "."))
                    if lname not in files:
                        raise refuse(f"hard link {m.name!r} -> {m.linkname!r}: no such file in the archive")
                    hardlink = posixpath.join(target, lname)
                for i in range(1, len(parts)):  # parents the archive lacks, as tar -x makes them
                    above = posixpath.join(target, *parts[:i])
                    writer.dir(above, mode_of(chmod, 0o755, True), _or_root(owner))
                rel = posixpath.join(target, name)
                files.discard(name)  # (a symlink stays in links: nothing may go below that name)
                if m.issym():
                    links.add(name)
                elif m.isreg() or m.islnk():
                    files.add(name)
                _emit_member(writer, tf, m, rel, owner, chmod, hardlink)
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise refuse(f"the archive is corrupt: {exc}") from None


# --- COPY --from -----------------------------------------------------------------------------------------


def split_glob(path: str) -> tuple[str, str | None]:
    """A COPY --from source → (the path to fetch from the image, the pattern the fetched tar's
    names must match, None without a wildcard). ``/out/*.txt`` → ``("/out", "out/*.txt")``: the
    tar of ``/out`` names its entries ``out/…``; a wildcard in the first part fetches ``/``,
    whose tar names entries without a leading dir."""
    norm = posixpath.normpath("/" + path.lstrip("/"))
    parts = [p for p in norm.split("/") if p]
    first = next((i for i, p in enumerate(parts) if _has_glob(p)), None)
    if first is None:
        return norm, None
    return "/" + "/".join(parts[:first]), "/".join(parts[max(first - 1, 0) :])


def _glob_regex(part: str) -> re.Pattern[str]:
    """One path component of Go's filepath.Match syntax (``*`` ``?`` ``[a-z]`` ``[^…]`` ``\\x``)."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "\\" and i + 1 < len(part):
            out.append(re.escape(part[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and (end := part.find("]", i + 2)) != -1:
            body = part[i + 1 : end]
            neg = body[:1] in ("^", "!")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, name: str) -> bool:
    """``name`` matches ``pattern`` part by part (a ``*`` never crosses a ``/``), as Go's filepath.Match."""
    pparts, nparts = pattern.split("/"), name.split("/")
    return len(pparts) == len(nparts) and all(
        _glob_regex(p).fullmatch(n) is not None for p, n in zip(pparts, nparts, strict=True)
    )


@dataclass(frozen=True, slots=True)
class TarSource:
    """One source inside a fetched tar: an entry's name ("" = the whole tar is a dir's contents)
    and whether it is a dir (its contents are copied) or not (it is)."""

    name: str
    is_dir: bool


def tar_sources(tar: IO[bytes], pattern: str | None) -> list[TarSource]:
    """The sources in a ``docker cp``-style tar: its top entry, or every entry matching ``pattern``."""
    found: list[TarSource] = []
    with tarfile.open(fileobj=tar, mode="r|") as tf:
        for m in tf:
            name = "/".join(_safe_parts(m.name))
            if not name:
                continue
            if pattern is None:
                return [TarSource(name.split("/")[0], m.isdir() and "/" not in name)]
            if glob_match(pattern, name):
                found.append(TarSource(name, m.isdir()))
    return found


def copy_from_tar(
    writer: LayerWriter,
    tar: IO[bytes],
    sources: list[TarSource],
    dest: str,
    as_dir: bool,
    owner: Owner,
    chmod: Chmod | None,
) -> None:
    """Re-write ``sources`` of a ``docker cp``-style tar (a seekable file) as COPY --from places
    them at ``dest``: a dir's contents into ``dest``, anything else at ``dest`` (or ``dest/name``
    when ``as_dir``). Owners kept unless ``--chown``; a hard link whose target is not copied
    becomes a file with the target's bytes (the tar is read again for them).
    """
    target = dest.strip("/")
    writer.parents(dest)
    copied: dict[str, str] = {}  # tar name of a file → where it went in the layer
    with tarfile.open(fileobj=tar, mode="r:") as tf:
        for m in tf:
            name = "/".join(_safe_parts(m.name))
            src = next(
                (s for s in sources if not s.name or name == s.name or name.startswith(s.name + "/")), None
            )
            if src is None or not name or m.ischr() or m.isblk():
                continue
            if src.is_dir:
                below = name[len(src.name) :].lstrip("/")
                if not below:
                    if target:
                        writer.dir(target, mode_of(chmod, m.mode, True), _keep(owner, m))
                    continue
                rel = posixpath.join(target, below) if target else below
            else:
                rel = posixpath.join(target, posixpath.basename(src.name)) if as_dir else target
                if as_dir and target:
                    writer.dir(target, 0o755, Owner() if owner.uid is None else owner)
            writer.parents("/" + rel)
            hardlink = ""
            if m.islnk():
                linked = "/".join(_safe_parts(m.linkname))
                if linked in copied:
                    hardlink = copied[linked]
                else:  # the first copy of that file here: a file with the target's bytes
                    m = _as_file(tf, m)
                    copied[linked] = rel
            if m.isreg():
                copied.setdefault(name, rel)
            _emit_member(writer, tf, m, rel, owner, chmod, hardlink)


def _as_file(tf: tarfile.TarFile, link: tarfile.TarInfo) -> tarfile.TarInfo:
    try:
        target = tf.getmember(link.linkname)
    except KeyError:
        raise InvalidArgument(
            f"COPY --from: hard link {link.name!r} to a missing {link.linkname!r}"
        ) from None
    info = copy.copy(link)
    info.type, info.linkname, info.size = tarfile.REGTYPE, "", target.size
    info.offset_data, info.sparse = target.offset_data, target.sparse
    return info


def _or_root(owner: Owner) -> Owner:
    return Owner() if owner.uid is None else owner


def tar_file_text(data: bytes) -> str | None:
    """The text of the one file in a ``docker cp``-style tar (None unless it is a regular file)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            first = tf.next()
            if first is None or not first.isreg():
                return None
            fh = tf.extractfile(first)
            return fh.read().decode("utf-8", "replace") if fh is not None else None
    except tarfile.TarError:
        return None


def _keep(owner: Owner, m: tarfile.TarInfo) -> Owner:
    return Owner(m.uid if owner.uid is None else owner.uid, m.gid if owner.gid is None else owner.gid)


def _emit_member(
    writer: LayerWriter,
    tf: tarfile.TarFile,
    m: tarfile.TarInfo,
    rel: str,
    owner: Owner,
    chmod: Chmod | None,
    hardlink: str,
) -> None:
    if m.ischr() or m.isblk():
        return
    mode = mode_of(chmod, m.mode, m.isdir())
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
