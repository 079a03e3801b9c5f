"""RUN --mount: what each mount of a step becomes on the runtime node, and what it adds to the
step's cache key — BuildKit's semantics (the Dockerfile reference, "RUN --mount").

======  ======================================================  ====================================
type    on the node (:class:`RunMount`)                         in the step's cache key
======  ======================================================  ====================================
cache   a volume named from the cache id (and uid/gid/mode),    the mount's fields; never what the
        labelled ``dockyard.build.cache``, made empty with      cache holds
        that owner and mode, reused by every later build
bind    files of the context (or of a stage or an image,        the mount's fields, and the digest
        fetched into the step's scratch) bound read-only;       of the context files / the stage's
        ``rw``: a throwaway copy, so writes are discarded       or image's id
secret  a file (0400 unless ``mode=``) in the step's scratch,   the mount's fields (the id), never
        bound read-only at /run/secrets/<id>; ``env=VAR``       the value
        puts the value in the step's environment
tmpfs   a tmpfs (exec allowed, ``size=``)                       the mount's fields
ssh     refused: no SSH agent forwarding yet
======  ======================================================  ====================================

Nothing mounted lands in the step's layer: mounted paths are not in the container's writable
layer, and the runtime's commit drops the stubs runc made to mount on where the image had no
such path (``dockyard.runtime.buildsteps``).

Binds are host bind mounts of paths under the builder's scratch: under ``dockyard up`` the
builder and the runtime share the machine and the user. A runtime on another node would need
the files shipped to it (multi-node: later). Files fetched from a stage or an image belong to
the container's root there (the builder is an ordinary user: it cannot give files away), their
modes kept.

``sharing`` of a cache id, within this builder: ``shared`` (default) lets steps use it at once;
``locked`` serialises the steps that ask for ``locked``; ``private`` gives a step a volume no
running step uses (``<name>-1``, ``-2`` … when the first is busy). :class:`CacheVolumes` keeps
when each volume was last used, for PruneCache; its record::

    <builder state>/cache-volumes.json   {"<volume name>": <unix time of last use>}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dockyard.builder import instructions as ins
from dockyard.builder.layers import HashSink, LayerWriter, Owner, extract_context
from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.core.fsutil import follow_in_root, lstat_under

SECRETS_DIR = "/run/secrets"
#: Labels of a cache mount's volume (``dockyard volume ls -f label=dockyard.build.cache``).
CACHE_LABEL = "dockyard.build.cache"
CACHE_ID_LABEL = "dockyard.build.cache.id"
#: BuildKit's limit on one secret.


@dataclass(frozen=True, slots=True)
class RunMount:
    """One mount of a RUN container, as the runtime takes it."""

    type: str  # "bind" (source: a host path), "volume" (source: a volume name) or "tmpfs"
    target: str
    source: str = ""
    read_only: bool = False
    size: int = 0  # tmpfs: bytes, 0 = unbounded


@dataclass(frozen=True, slots=True)
class Planned:
    """A step's mount after the checks: its absolute target ("" for an env-only secret), and
    the cache or secret id."""

    mount: ins.Mount
    target: str
    id: str = ""

    @property
    def key(self) -> str:
        """The mount's part of the step's cache key: what it is, never what it holds."""
        m = self.mount
        fields = [m.type, self.target, self.id, m.source, m.from_, m.readonly, m.sharing, m.size]
        return json.dumps([*fields, m.mode, m.uid, m.gid, m.env, m.required], separators=(",", ":"))

    @property
    def volume(self) -> str:
        """A cache mount's volume name: the id with the owner and mode it is made with (BuildKit
        keys a cache by its id and its base, and uid/gid/mode make the base)."""
        digest = hashlib.sha256(json.dumps([self.id, *self._owner]).encode()).hexdigest()
        return f"buildcache-{digest[:24]}"

    @property
    def volume_options(self) -> dict[str, str]:
        """The local driver's ``o=uid=…,gid=…,mode=…`` for a cache volume."""
        uid, gid, mode = self._owner
        return {"o": f"uid={uid},gid={gid},mode={mode:o}"}

    @property
    def _owner(self) -> tuple[int, int, int]:
        """A cache dir's owner and mode: BuildKit's 0:0 0755 unless given."""
        m = self.mount
        return (m.uid or 0, m.gid or 0, 0o755 if m.mode is None else m.mode)


# --- the pure part: checks, targets, ids ------------------------------------------------------------


def _target(raw: str, workdir: str, what: str) -> str:
    """An absolute target: a relative one is below the WORKDIR, as BuildKit has it; never "/"."""
    target = posixpath.normpath(posixpath.join("/", workdir or "/", raw))
    if target.startswith("//"):
        target = target[1:]
    if target == "/":
        raise InvalidArgument(f'{what}: invalid mount target "/"')
    return target


def _what(m: ins.Mount) -> str:
    return f"RUN --mount=type={m.type}" + (f",target={m.target}" if m.target else "")


def plan(mounts: Sequence[ins.Mount], workdir: str, secret_ids: Collection[str]) -> tuple[Planned, ...]:
    """Check a step's mounts and place them; InvalidArgument (one line) for what cannot be done.

    ``secret_ids`` are the secrets the build was given: a ``required`` one missing fails here,
    before the cache is looked at, so a build never passes or fails on the cache's state.
    """
    out: list[Planned] = []
    seen: set[str] = set()
    for m in mounts:
        what = _what(m)
        if m.env is not None and m.type != "secret":
            raise InvalidArgument(f"{what}: env= is for secret mounts only")
        if m.type == "ssh":
            raise InvalidArgument(
                f"{what}: ssh mounts are not supported (no SSH agent forwarding yet); "
                "pass a key with --secret and a secret mount"
            )
        if m.type == "secret":
            p = _secret(m, workdir, secret_ids)
        elif m.type == "cache":
            if m.from_:
                raise InvalidArgument(
                    f"{what}: a cache seeded from a stage or an image (from=) is not supported yet"
                )
            if m.source and posixpath.normpath("/" + m.source) != "/":
                raise InvalidArgument(f"{what}: source= (a sub-directory of the cache) is not supported yet")
            target = _target(m.target, workdir, what)
            p = Planned(m, target, m.id or posixpath.normpath(m.target or target))
        else:  # bind, tmpfs
            p = Planned(m, _target(m.target, workdir, what))
        if p.target:
            if p.target in seen:
                raise InvalidArgument(f"{what}: another mount of this step has the target {p.target}")
            seen.add(p.target)
        out.append(p)
    return tuple(out)


def _secret(m: ins.Mount, workdir: str, secret_ids: Collection[str]) -> Planned:
    what = _what(m)
    sid = m.source or m.id or posixpath.basename(m.target.rstrip("/"))
    if not sid:
        raise InvalidArgument(f"{what}: a secret mount needs id= (or a target to name it)")
    if (m.uid or 0) != 0 or (m.gid or 0) != 0:
        # the builder is an ordinary user: it cannot give the file to another user of the node
        raise InvalidArgument(
            f"{what}: uid/gid other than 0 are not supported yet for secrets; "
            "use mode=0444 for a step that runs as another user"
        )
    if m.required and sid not in secret_ids:
        raise InvalidArgument(
            f"secret {sid!r} is required but was not given: dockyard build --secret id={sid},src=FILE"
        )
    if m.target:
        target = _target(m.target, workdir, what)
    elif m.env is None:
        target = f"{SECRETS_DIR}/{posixpath.basename(sid)}"
    else:
        target = ""  # env= alone: no file
    return Planned(m, target, sid)


# --- bind sources in the context ------------------------------------------------------------------


def inside(root: Path, path: str) -> Path:
    """``path`` in ``root`` as if ``root`` were "/": symlinks (absolute or relative) are followed
    but never lead out of it. NotFound when a component is missing."""
    found = follow_in_root(path, lstat_under(root), lambda rel: os.readlink(root / rel))
    if found is None:
        raise NotFound(f"{path}: not found")
    return root / found[0]


def context_source(context: Path, m: ins.Mount) -> Path:
    """The context path a bind mount without ``from=`` binds; NotFound naming it."""
    try:
        return inside(context, m.source)
    except NotFound:
        raise NotFound(
            f"{_what(m)}: source {posixpath.normpath('/' + m.source)} not found in the build context "
            "(or excluded by .dockerignore)"
        ) from None


def context_digest(context: Path, m: ins.Mount) -> str:
    """The digest of the files a context bind mount shows: names, types, modes, link targets and
    bytes (not times, not owners — those of context files are 0:0), as a COPY layer hashes them."""
    path = context_source(context, m)
    sink = HashSink()
    writer = LayerWriter(sink, 0)
    if path.is_dir():
        writer.tree("src", path, Owner(), None, include_root=True)
    else:
        writer.path("src", path, Owner(), None)
    writer.close()
    return sink.digest


# --- cache volumes ----------------------------------------------------------------------------------


class CacheVolumes:
    """Which volume a step's cache mount gets (see ``sharing`` in the module docstring), and
    when each was last used. Lives as long as the builder; used on its event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._busy: Counter[str] = Counter()
        self._locks: dict[str, asyncio.Lock] = {}
        self._used: dict[str, float] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            self._used = {str(k): float(v) for k, v in json.loads(path.read_bytes()).items()}

    @contextlib.asynccontextmanager
    async def use(self, name: str, sharing: str) -> AsyncIterator[str]:
        """The volume to mount for a cache whose volume is ``name``; held until the step ends."""
        if sharing == "locked":
            lock = self._locks.setdefault(name, asyncio.Lock())
            async with lock:
                with self._hold(name):
                    yield name
            return
        if sharing == "private":
            n = 0
            while self._busy[_instance(name, n)]:
                n += 1
            name = _instance(name, n)
        with self._hold(name):
            yield name

    @contextlib.contextmanager
    def _hold(self, name: str) -> Iterator[None]:
        self._busy[name] += 1
        try:
            yield
        finally:
            self._busy[name] -= 1
            self._used[name] = time.time()
            self._save()

    def stale(self, names: Collection[str], keep_seconds: int) -> list[str]:
        """Of ``names``, those no step holds and none used in ``keep_seconds`` (all when 0)."""
        now = time.time()
        return sorted(
            n
            for n in names
            if not self._busy[n] and (not keep_seconds or now - self._used.get(n, 0) > keep_seconds)
        )

    def forget(self, names: Collection[str]) -> None:
        for n in names:
            self._used.pop(n, None)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self._used, sort_keys=True))
        os.replace(tmp, self.path)


def _instance(name: str, n: int) -> str:
    return name if n == 0 else f"{name}-{n}"


class VolumeAdmin(Protocol):
    async def create_volume(self, name: str, labels: Mapping[str, str], opts: Mapping[str, str]) -> None: ...

    async def list_volumes(self, filters: Sequence[str]) -> list[str]: ...

    async def remove_volume(self, name: str) -> None: ...


async def prune_volumes(runtime: VolumeAdmin, caches: CacheVolumes, keep_seconds: int) -> int:
    """Remove the cache mounts' volumes not used in ``keep_seconds`` (all when 0) that nothing
    uses now; how many were removed."""
    names = await runtime.list_volumes([f"label={CACHE_LABEL}"])
    removed = []
    for name in caches.stale(names, keep_seconds):
        with contextlib.suppress(FailedPrecondition, NotFound):  # in use by a container, or gone
            await runtime.remove_volume(name)
            removed.append(name)
    caches.forget(removed)
    return len(removed)


# --- a step's mounts, made and taken down -----------------------------------------------------------


class MountRuntime(VolumeAdmin, Protocol):
    async def copy_from(self, image: str, path: str, out: Callable[[bytes], object]) -> None: ...


@contextlib.asynccontextmanager
async def mounted(
    planned: Sequence[Planned],
    images: Sequence[str],
    *,
    context: Path,
    secrets: Mapping[str, bytes],
    scratch: Path,
    runtime: MountRuntime,
    caches: CacheVolumes,
) -> AsyncIterator[tuple[list[RunMount], list[str]]]:
    """The step's mounts and its extra environment (``env=`` secrets), for as long as the step
    runs. ``images[i]``: the image id a ``from=`` bind reads ("" otherwise). ``scratch`` is the
    step's own directory (the caller removes it: secret files, fetched and copied binds)."""
    async with contextlib.AsyncExitStack() as stack:
        out: list[RunMount] = []
        env: list[str] = []
        for n, (p, image) in enumerate(zip(planned, images, strict=True)):
            m = p.mount
            if m.type == "cache":
                name = await stack.enter_async_context(caches.use(p.volume, m.sharing))
                labels = {CACHE_LABEL: "true", CACHE_ID_LABEL: p.id}
                await runtime.create_volume(name, labels, p.volume_options)
                out.append(RunMount("volume", p.target, name, m.readonly))
            elif m.type == "tmpfs":
                out.append(RunMount("tmpfs", p.target, read_only=m.readonly, size=m.size))
            elif m.type == "secret":
                value = secrets.get(p.id)
                if value is None:
                    continue  # optional and not given: nothing mounted (BuildKit's rule)
                if m.env is not None:
                    env.append(f"{m.env}={_text(p.id, value)}")
                if p.target:
                    path = scratch / f"secret-{n}"
                    await asyncio.to_thread(_write_secret, path, value, 0o400 if m.mode is None else m.mode)
                    out.append(RunMount("bind", p.target, str(path), True))
            elif image:
                source = await _fetch(runtime, image, m, scratch / f"bind-{n}")
                out.append(RunMount("bind", p.target, str(source), m.readonly))
            else:
                source = await asyncio.to_thread(context_source, context, m)
                if not m.readonly:  # writes go to a copy, thrown away with the scratch
                    source = await asyncio.to_thread(_copy, source, scratch / f"bind-{n}")
                out.append(RunMount("bind", p.target, str(source), m.readonly))
        yield out, env


def _text(sid: str, value: bytes) -> str:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(
            f"secret {sid!r} is not UTF-8 text: it cannot go into an environment variable"
        ) from None
    if "\0" in text:
        raise InvalidArgument(f"secret {sid!r} holds a NUL byte: it cannot go into an environment variable")
    return text


def _write_secret(path: Path, value: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, value)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _copy(source: Path, dest: Path) -> Path:
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True)
    else:
        dest.mkdir()
        dest.chmod(0o755)  # bind-mounted into the step: traversable whatever our umask (077)
        dest = dest / source.name
        shutil.copy2(source, dest)
    return dest


async def _fetch(runtime: MountRuntime, image: str, m: ins.Mount, dest: Path) -> Path:
    """The ``source`` of ``image`` as files under ``dest`` (the whole root for source "/")."""
    source = posixpath.normpath("/" + m.source)
    tar = dest.with_suffix(".tar")
    fh = await asyncio.to_thread(open, tar, "wb")
    try:
        try:
            await runtime.copy_from(image, source, fh.write)
        except NotFound:
            raise NotFound(f"{_what(m)}: source {source} not found in {m.from_}") from None
    finally:
        await asyncio.to_thread(fh.close)

    def unpack() -> Path:
        with open(tar, "rb") as fh:
            extract_context(iter(lambda: fh.read(1 << 20), b""), dest)
        tar.unlink()
        top = dest if source == "/" else dest / posixpath.basename(source)
        if top.is_symlink():  # it would be followed on this host, not in the image
            raise InvalidArgument(f"{_what(m)}: source {source} in {m.from_} is a symlink: name its target")
        return top

    return await asyncio.to_thread(unpack)
