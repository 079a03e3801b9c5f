"""Volumes on this node (docker volume): directories that outlive the containers that mount them.

No gRPC here; :mod:`dockyard.runtime.volume_servicer` is the edge. On disk::

    <state>/volumes/
      <name>/
        volume.json   the record (VolumeRecord), replaced atomically (tmp + fsync + rename)
        _data/        the data: bind-mounted (rbind) into every container that uses the volume
      .new-<hex>/     a volume being made; renamed to <name> once complete, so a volume is
                      either whole or absent (a crash leaves only a .new- dir, swept at start)
      .gone-<hex>/    a volume being removed: renamed out of the way first, then deleted

Files in ``_data`` keep the ids they have in the container: the runtime is root of the node's
user namespace (see :mod:`dockyard.runtime.userns`) and containers share it, so a file written
by uid 999 in a container is uid 999 here (and a subordinate id on the host).

How containers use volumes (:class:`dockyard.runtime.containers.ContainerManager` calls these):

- at create, :meth:`VolumeStore.resolve` turns what was asked — the container's mounts
  (:class:`dockyard.runtime.mounts.MountSpec`: binds, named and anonymous volumes, tmpfs),
  ``--volumes-from`` and the image's ``VOLUME`` paths — into the mounts persisted in its config.
  Named volumes are created on first use; anonymous ones get a random 64-hex name and are
  marked so.
- at start, :meth:`VolumeStore.mounts` gives the bind mounts of the volumes and, the first time
  a volume is mounted, copies the image's content at the mount path into it if it is empty
  (docker's copy-up; ``nocopy`` skips it): ownership, modes, times, symlinks, hard links, fifos
  and xattrs are kept, and the volume's root takes the owner and mode of the image's directory.
  The copy goes to a scratch directory renamed over the empty ``_data``: never half-visible.
- at remove, :meth:`VolumeStore.release` removes the container's anonymous volumes when asked
  (``rm -v``, ``--rm``) unless another container still uses them.

A volume in use by any container, running or not, cannot be removed. Known gap: a volume removed
between a container's create resolving it and the container's record being saved is made again,
empty, when that container starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.core.events import Publisher, Subject, new_event
from dockyard.core.fsutil import follow_in_root, fsync_dir, lstat_under
from dockyard.core.rootless import MIN_SUBIDS  # the node's namespace maps ids 0…MIN_SUBIDS
from dockyard.runtime import runflags
from dockyard.runtime.mounts import Kind, MountSpec, check_name, container_path

log = structlog.get_logger(__name__)

DRIVER = "local"
#: xattrs never copied: overlay's own bookkeeping and what a user namespace may not set.
_SKIP_XATTRS = ("user.overlay.", "trusted.", "security.selinux")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class VolumeRecord:
    """One volume, as stored in volume.json. ``populated``: its first mount happened (copy-up done)."""

    name: str
    created: str
    driver: str = DRIVER
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    populated: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> VolumeRecord:
        return cls(**json.loads(text))


def root_owner(options: Mapping[str, str]) -> tuple[int, int, int]:
    """The (uid, gid, mode) of a new volume's root from the local driver's options: only
    ``o=uid=N,gid=N,mode=OCTAL`` (podman's ``o=uid=,gid=`` plus a mode), each part optional;
    an id not given is -1 (the runtime's own: root of the node's namespace), the mode 0755.
    The builder makes its cache mounts so (``RUN --mount=type=cache,uid=…``)."""
    extra = sorted(set(options) - {"o"})
    if extra:
        raise InvalidArgument(
            f"the local volume driver takes only o=uid=N,gid=N,mode=OCTAL (got {', '.join(extra)})"
        )
    values = {"uid": -1, "gid": -1, "mode": 0o755}
    for part in filter(None, options.get("o", "").split(",")):
        key, _, value = part.partition("=")
        if key not in values:
            raise InvalidArgument(f"invalid volume option o={options['o']}: {key!r} is not uid, gid or mode")
        try:
            n = int(value, 8 if key == "mode" else 10)
        except ValueError:
            n = -1
        if n < 0 or (key == "mode" and n > 0o7777) or (key != "mode" and n > MIN_SUBIDS):
            raise InvalidArgument(f"invalid volume option o={options['o']}: bad {key} {value!r}")
        values[key] = n
    return values["uid"], values["gid"], values["mode"]


# --- copy-up -----------------------------------------------------------------------------------------


def resolve_in_root(root: Path, path: str) -> Path | None:
    """``path`` inside ``root`` as if ``root`` were "/": symlinks (absolute or relative) and ``..``
    never lead out of it. None when a component is missing. The result is no symlink."""
    found = follow_in_root(path, lstat_under(root), lambda rel: os.readlink(root / rel))
    return root / found[0] if found is not None else None


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(_SKIP_XATTRS):
            continue
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)


def _copy_attrs(src: str, dst: str, st: os.stat_result) -> None:
    """xattrs, owner, then mode (chown clears set-id bits), then times; symlinks: no mode."""
    link = stat.S_ISLNK(st.st_mode)
    _copy_xattrs(src, dst)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: Path, dst: Path) -> int:
    """Copy what is inside directory ``src`` into the empty directory ``dst``; returns entries copied.

    Nothing is followed: symlinks are copied as symlinks, files open with O_NOFOLLOW. Hard links
    within ``src`` stay hard links. Device nodes, which a user namespace cannot make, and sockets
    are skipped (logged). ``dst`` itself is not touched (see :func:`copy_up`).
    """
    seen: dict[tuple[int, int], str] = {}
    count = 0

    def walk(s: str, d: str) -> None:
        nonlocal count
        with os.scandir(s) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            sp, dp = entry.path, os.path.join(d, entry.name)
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            count += 1
            if stat.S_ISDIR(mode):
                os.mkdir(dp, 0o700)
                walk(sp, dp)
                _copy_attrs(sp, dp, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(sp), dp)
                _copy_attrs(sp, dp, st)
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    os.link(seen[key], dp)
                    continue
                fin = os.open(sp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    fout = os.open(dp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    try:
                        with open(fin, "rb", closefd=False) as r, open(fout, "wb", closefd=False) as w:
                            shutil.copyfileobj(r, w, 1 << 20)
                    finally:
                        os.close(fout)
                finally:
                    os.close(fin)
                _copy_attrs(sp, dp, st)
                if st.st_nlink > 1:
                    seen[key] = dp
            elif stat.S_ISFIFO(mode):
                os.mkfifo(dp, 0o600)
                _copy_attrs(sp, dp, st)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                try:
                    os.mknod(dp, mode, st.st_rdev)
                    _copy_attrs(sp, dp, st)
                except PermissionError:
                    log.warning("copy-up skips a device node (a user namespace cannot make one)", path=sp)
            else:
                log.warning("copy-up skips a socket", path=sp)

    walk(os.fspath(src), os.fspath(dst))
    return count


# --- the store ---------------------------------------------------------------------------------------


def _users_of(containers: Iterable[Any]) -> dict[str, list[str]]:
    """volume name → names of the containers (any state) mounting it."""
    out: dict[str, list[str]] = {}
    for record in containers:
        for m in record.config.mounts:
            if m.kind == Kind.VOLUME:
                out.setdefault(m.source, []).append(record.name)
    return {k: sorted(set(v)) for k, v in out.items()}


def _du(path: Path) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for name in files + dirs:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _label_match(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter {key}={value!r}: expected true or false")


def _filter(
    raw: str, users: Mapping[str, list[str]], allowed: Sequence[str]
) -> Callable[[VolumeRecord], bool]:
    """One ``KEY=VALUE`` filter of ``docker volume ls/prune`` as a predicate (``all``: always true)."""
    key, sep, value = raw.partition("=")
    if not sep or key not in allowed:
        raise InvalidArgument(f"invalid filter {raw!r}: use {', '.join(k + '=…' for k in allowed)}")
    if key in ("dangling", "all"):
        want = _bool(key, value)
        if key == "all":  # prune: every unused volume goes either way
            return lambda r: True
        return lambda r: (r.name not in users) == want
    if key == "name":
        return lambda r: value in r.name
    if key == "label":
        return lambda r: _label_match(r.labels, value)
    if key == "label!":
        return lambda r: not _label_match(r.labels, value)
    return lambda r: r.driver == value


class VolumeStore:
    """Create, list, remove and prune volumes; give containers their volume mounts.

    ``containers`` lists every container record (any state); the container manager sets it (it
    is made after the store). Disk work is synchronous (callers use a thread); methods that need
    ``containers`` are async and read it on the event loop, where the manager changes it.
    """

    def __init__(
        self,
        root: Path,
        publisher: Publisher,
        source: str,
        containers: Callable[[], Iterable[Any]] = lambda: (),
    ) -> None:
        self.root = root
        self.publisher = publisher
        self.source = source
        self.containers = containers
        self._lock = asyncio.Lock()  # create/remove/prune/resolve, on the loop
        self._disk = threading.RLock()  # the same, and copy-up, across threads
        root.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        for d in self.root.iterdir():
            if d.name.startswith((".new-", ".gone-")):
                shutil.rmtree(d, ignore_errors=True)

    # --- records -------------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def mountpoint(self, name: str) -> Path:
        return self._dir(name) / "_data"

    @staticmethod
    def _write(path: Path, record: VolumeRecord) -> None:
        tmp = path / "volume.json.tmp"
        with open(tmp, "w") as f:
            f.write(record.to_json())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path / "volume.json")
        fsync_dir(path)

    def _read(self, name: str) -> VolumeRecord | None:
        try:
            return VolumeRecord.from_json((self._dir(name) / "volume.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable volume record", name=name, error=str(exc))
            return None

    def get(self, name: str) -> VolumeRecord:
        record = self._read(name) if name and "/" not in name and not name.startswith(".") else None
        if record is None:
            raise NotFound(f"no such volume: {name}")
        return record

    def records(self) -> list[VolumeRecord]:
        out = []
        for d in sorted(self.root.iterdir()):
            if not d.name.startswith("."):
                record = self._read(d.name)
                if record is not None:
                    out.append(record)
        return out

    def _emit(self, subject: Subject, record: VolumeRecord) -> None:
        data = {"name": record.name, "driver": record.driver, "anonymous": record.anonymous}
        self.publisher.publish(new_event(subject, self.source, record.name, data, record.labels))

    # --- create / remove (synchronous: disk) ---------------------------------------------------------

    def _create(
        self,
        name: str,
        labels: Mapping[str, str],
        anonymous: bool,
        options: Mapping[str, str] | None = None,
    ) -> tuple[VolumeRecord, bool]:
        """The volume ``name`` (made, with its event, if absent); and whether it was made now."""
        with self._disk:
            existing = self._read(name)
            if existing is not None:
                return existing, False
            uid, gid, mode = root_owner(options or {})
            record = VolumeRecord(
                name=name,
                created=now(),
                labels=dict(labels),
                options=dict(options or {}),
                anonymous=anonymous,
            )
            new = self.root / f".new-{secrets.token_hex(8)}"
            try:
                (new / "_data").mkdir(parents=True)
                os.chown(new / "_data", uid, gid)  # ids of the node's namespace, as the containers see them
                (new / "_data").chmod(mode)
                self._write(new, record)
                os.rename(new, self._dir(name))
            except OSError as exc:
                shutil.rmtree(new, ignore_errors=True)
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # a stray dir without a record
                    raise FailedPrecondition(
                        f"cannot create volume {name}: {self._dir(name)} exists without a record"
                    ) from None
                raise
            fsync_dir(self.root)
        self._emit(Subject.VOLUME_CREATED, record)
        log.info("volume created", name=name, anonymous=anonymous)
        return record, True

    def _delete(self, record: VolumeRecord) -> int:
        """Remove the volume's directory (atomically out of sight first); the bytes it held."""
        with self._disk:
            d = self._dir(record.name)
            size = _du(d / "_data")
            gone = self.root / f".gone-{secrets.token_hex(8)}"
            os.rename(d, gone)
            fsync_dir(self.root)
        shutil.rmtree(gone, ignore_errors=True)
        self._emit(Subject.VOLUME_REMOVED, record)
        log.info("volume removed", name=record.name)
        return size

    # --- the API (async: the container list is read on the loop) -------------------------------------

    async def create(
        self,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        driver: str = "",
        options: Mapping[str, str] | None = None,
    ) -> VolumeRecord:
        """docker volume create: an existing volume is returned as it is."""
        if driver not in ("", DRIVER):
            raise InvalidArgument(f"volume driver {driver!r} is not supported: only {DRIVER!r}")
        root_owner(options or {})  # the only options: o=uid=…,gid=…,mode=… (checked before anything is made)
        for key in labels or {}:
            if not key:
                raise InvalidArgument("a volume label needs a key")
        if name:
            check_name(name)
        async with self._lock:
            record, _ = await asyncio.to_thread(
                self._create, name or secrets.token_hex(32), labels or {}, False, options
            )
        return record

    def users(self) -> dict[str, list[str]]:
        """volume name → containers using it; call on the event loop."""
        return _users_of(self.containers())

    async def usage(self) -> list[tuple[VolumeRecord, list[str], int]]:
        """Every volume, its users and the bytes it holds on disk (``system df``)."""
        users = self.users()
        records = self.records()
        sizes = await asyncio.to_thread(lambda: [_du(self._dir(r.name)) for r in records])
        return [(r, users.get(r.name, []), size) for r, size in zip(records, sizes, strict=True)]

    def select(self, filters: Sequence[str] = ()) -> list[tuple[VolumeRecord, list[str]]]:
        """Volumes with their users, filtered as ``docker volume ls -f``; call on the event loop."""
        users = self.users()
        checks = [_filter(raw, users, ("dangling", "name", "label", "label!", "driver")) for raw in filters]
        return [(r, users.get(r.name, [])) for r in self.records() if all(c(r) for c in checks)]

    async def remove(self, name: str, force: bool = False) -> None:
        """docker volume rm: refused while any container uses it; ``force`` ignores a missing one."""
        async with self._lock:
            try:
                record = self.get(name)
            except NotFound:
                if force:
                    return
                raise
            using = self.users().get(record.name)
            if using:
                raise FailedPrecondition(
                    f"cannot remove volume {record.name}: it is in use by container"
                    f"{'s' if len(using) > 1 else ''} {', '.join(using)}"
                )
            await asyncio.to_thread(self._delete, record)

    async def prune(self, filters: Sequence[str] = ()) -> tuple[list[str], int]:
        """Remove every volume no container uses (named ones too); (names, bytes reclaimed)."""
        checks = [_filter(raw, {}, ("label", "label!", "all")) for raw in filters]
        deleted: list[str] = []
        reclaimed = 0
        async with self._lock:
            users = self.users()
            for record in self.records():
                if record.name in users or not all(c(record) for c in checks):
                    continue
                reclaimed += await asyncio.to_thread(self._delete, record)
                deleted.append(record.name)
        return deleted, reclaimed

    # --- containers ----------------------------------------------------------------------------------

    async def resolve(
        self,
        mounts: Sequence[MountSpec],
        tmpfs: Sequence[str],
        volumes_from: Sequence[str],
        image_volumes: Iterable[str],
        find: Callable[[str], Any],
    ) -> list[MountSpec]:
        """A new container's mounts, its volumes made (see the module docstring).

        Order: the container's own ``mounts`` (anonymous ones get a volume), then the binds and
        volumes ``--volumes-from CONTAINER[:ro|rw]`` brings (skipping paths already mounted; the
        mode, when given, replaces the source's), then an anonymous volume for each image
        ``VOLUME`` path nothing mounts yet (``--tmpfs`` paths count). Everything is checked
        before anything is made.
        """
        planned: list[MountSpec] = []
        taken: set[str] = set()
        for m in mounts:
            if m.kind == Kind.BIND:
                runflags.bind_mount(m.source, m.target, m.read_only)  # the host path must exist
            if m.target in taken:
                raise InvalidArgument(f"duplicate mount point: {m.target}")
            taken.add(m.target)
            planned.append(m)
        taken |= {container_path(t.partition(":")[0], t) for t in tmpfs}
        for item in volumes_from:
            ref, _, mode = item.partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid --volumes-from {item!r}: the mode must be ro or rw")
            for m in find(ref).config.mounts:
                if m.kind == Kind.TMPFS or m.target in taken:
                    continue
                taken.add(m.target)
                planned.append(replace(m, read_only=m.read_only if not mode else mode == "ro"))
        for path in sorted(image_volumes):
            target = container_path(path, f"VOLUME {path}")
            if target not in taken:
                taken.add(target)
                planned.append(MountSpec(Kind.ANONYMOUS, "", target))

        out: list[MountSpec] = []
        async with self._lock:
            for m in planned:
                if m.kind == Kind.ANONYMOUS:
                    record, _ = await asyncio.to_thread(self._create, secrets.token_hex(32), {}, True)
                    m = replace(m, kind=Kind.VOLUME, source=record.name)
                elif m.kind == Kind.VOLUME:
                    await asyncio.to_thread(self._create, m.source, {}, False)
                out.append(m)
        return out

    def mounts(self, mounts: Sequence[MountSpec], rootfs: Path) -> list[runflags.BindMount]:
        """The bind mounts of the volumes among ``mounts``, for a container about to start on
        ``rootfs`` (its merged root, not running). Synchronous; may copy (see copy_up).

        A volume that went missing is made again, empty (named volumes are made on use).
        """
        out = []
        for m in mounts:
            if m.kind != Kind.VOLUME:
                continue
            with self._disk:
                record = self._read(m.source)
                if record is None:
                    record, _ = self._create(m.source, {}, False)
                if not record.populated:
                    if not m.no_copy:
                        self._copy_up(record, rootfs, m.target)
                    record = replace(record, populated=True)
                    self._write(self._dir(record.name), record)
            out.append(runflags.BindMount(str(self.mountpoint(record.name)), m.target, m.read_only))
        return out

    def _copy_up(self, record: VolumeRecord, rootfs: Path, target: str) -> None:
        """Fill an empty volume with the image's directory at ``target`` (docker's copy-up)."""
        data = self.mountpoint(record.name)
        if any(os.scandir(data)):
            return
        source = resolve_in_root(rootfs, target)
        if source is None:
            return
        st = os.lstat(source)
        if not stat.S_ISDIR(st.st_mode):
            return
        scratch = self._dir(record.name) / "_copyup"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        try:
            count = copy_tree(source, scratch)
            _copy_attrs(os.fspath(source), os.fspath(scratch), st)
            os.rename(scratch, data)  # over the empty _data: the volume is never half-filled
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        log.info("volume filled from the image", name=record.name, path=target, entries=count)

    async def release(self, mounts: Sequence[MountSpec], remove_anonymous: bool) -> list[str]:
        """After a container is gone: with ``remove_anonymous``, remove its anonymous volumes that no
        other container uses. Never raises for a volume already gone; returns what was removed."""
        if not remove_anonymous:
            return []
        removed = []
        async with self._lock:
            users = self.users()
            for m in mounts:
                record = self._read(m.source) if m.kind == Kind.VOLUME else None
                if record is not None and record.anonymous and m.source not in users:
                    await asyncio.to_thread(self._delete, record)
                    removed.append(record.name)
        return removed
