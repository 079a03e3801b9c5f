"""The build engine: a planned Dockerfile executed step by step against a runtime node.

The engine holds no images. The state of a stage after each step is an image in the runtime's
store (``Runtime``, a narrow role interface; ``remote.py`` implements it over gRPC), so:

- FROM an image: Inspect; FROM scratch: nothing yet; FROM a stage: that stage's result.
- metadata (ENV LABEL CMD …): the new config section (``imageconfig.apply``) → ``configure``,
  a new image whose history gains an ``empty_layer`` entry; ARG leaves no history (BuildKit).
- COPY/ADD from the context: a reproducible layer tar (``layers.py``) → ``add_layer``;
  ``COPY --from``: the stage's files fetched through a created (never started) container (a
  wildcard fetches the dir above it and picks the matches); ADD extracts a context file that is
  a tar (by its bytes) and downloads a URL (``download.py``) into the build's scratch dir;
  ``--chown`` names are looked up in the destination image's ``/etc/passwd`` and ``/etc/group``
  (fetched the same way), only when the step is not cached. ``--link`` is accepted and does
  what COPY does: a COPY layer is already made from its sources alone (the parent is only asked
  for the dirs on the way to the destination); the key keeps the parent, so a changed base
  re-makes the step — cheap, it runs nothing.
- RUN: a container of the current image (argv through the SHELL, the step's environment, the
  image's WorkingDir and User, ``--network``), attached (output streamed as progress), its
  writable layer committed with docker's ``RUN …`` history line, then removed.
- WORKDIR sets the config and, as BuildKit does, makes the directory when the image lacks it
  (``mkdir -p``, 0755, owned by the USER): a layer then, an ``empty_layer`` entry otherwise.

**Cache.** Before doing a step the engine computes its key (``cache.py``): parent image id +
the step's history line + what it reads (the COPY tar's digest, computed in a hash-only pass;
the --from image id; an ADD'ed URL's bytes, or its ``--checksum`` so that a hit downloads
nothing; a RUN's environment, user, workdir and network) + the epoch. A hit whose
image is still in the store is used as is (reported ``cached``); a changed file changes its
COPY's digest, hence that step's image id and the key of every later step — exactly the steps
after it re-run. ``no_cache`` skips lookups (and still records the results).

**Reproducible by default.** Every history entry and the image's ``created`` are the epoch:
``SOURCE_DATE_EPOCH`` (the option, or the build-arg of that name), **0 when unset** — a choice:
BuildKit only clamps when it is set; we want two builds of the same inputs to give the same
image id with no flag, at the price of images saying they were made in 1970 (as ko's do).
COPY layers clamp every mtime to the epoch; RUN layers are committed with the same clamp. A
RUN-free Dockerfile therefore gives the same image id on every clean build; a RUN step is as
reproducible as its command.

**Shared cache and push** (``cachesync.py``). ``--cache-from`` indexes are read at the start;
a local miss whose key one lists pulls that step image by digest (same image id, so it counts
as cached). At the end, after tagging: ``--push`` pushes every tag, then ``--cache-to`` exports
the step images this build looked up (all stages', or the final image's chain). An unreachable
cache to import from is a warning; a failed push or export fails the build, naming the image
that was made.

Stages of one plan level are built concurrently; within a stage, steps are sequential.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import posixpath
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from dockyard.builder import imageconfig, mounts
from dockyard.builder import instructions as ins
from dockyard.builder.cache import BuildCache, step_key
from dockyard.builder.cachesync import (
    RegistryCache,
    RegistryRuntime,
    Say,
    UsedSteps,
    in_stage,
)
from dockyard.builder.dockerfile import parse
from dockyard.builder.download import MAX_DOWNLOAD, check_sources, download, is_url, url_filename
from dockyard.builder.imageconfig import StageState
from dockyard.builder.layers import (
    Chmod,
    Existing,
    HashSink,
    LayerWriter,
    Owner,
    Source,
    TarSource,
    chown_names,
    context_sources,
    copy_from_tar,
    copy_layer,
    destination,
    is_archive,
    mark_archives,
    mode_of,
    parse_chmod,
    parse_chown,
    split_glob,
    tar_file_text,
    tar_sources,
)
from dockyard.builder.mounts import CacheVolumes, RunMount
from dockyard.builder.plan import BaseImage, BuildOptions, Plan, PlannedStage, Platform, Step, plan
from dockyard.builder.redact import Redactor
from dockyard.core.cacheoptions import CacheSpec
from dockyard.core.errors import DockyardError, FailedPrecondition, InvalidArgument, NotFound
from dockyard.core.names import names_registry
from dockyard.core.oci.reference import registry_ref

log = structlog.get_logger("dockyard.builder")

CHUNK = 1 << 20
_METADATA = (
    ins.Env,
    ins.Label,
    ins.Cmd,
    ins.Entrypoint,
    ins.Workdir,
    ins.User,
    ins.Expose,
    ins.Volume,
    ins.StopSignal,
    ins.Shell,
    ins.Healthcheck,
    ins.Onbuild,
    ins.Maintainer,
)


# --- what the engine needs from a runtime node --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Image:
    """An image of the node's store: its id and its config document."""

    id: str
    doc: Mapping[str, Any]
    # ``doc`` is not what the store holds for ``id``: a step must send its config (ONBUILD cleared)
    edited: bool = False

    @property
    def config(self) -> dict[str, Any]:
        section = self.doc.get("config")
        return dict(section) if isinstance(section, dict) else {}


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step for the node to store: on ``parent`` ("" = scratch), the new config (None: keep)."""

    parent: str
    config: dict[str, Any] | None
    created_by: str
    created: int  # seconds since the epoch
    clamp_mtime: int | None = None


@dataclass(frozen=True, slots=True)
class RunSpec:
    image: str
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    network: str
    mounts: tuple[RunMount, ...] = ()  # RUN --mount (dockyard.builder.mounts)


@dataclass(frozen=True, slots=True)
class PathInfo:
    """A path of an image: where it leads (symlinks followed), its st_mode and owner."""

    resolved: str
    mode: int
    uid: int
    gid: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


Output = Callable[[str, bytes], Awaitable[None]]


class Runtime(Protocol):
    async def inspect(self, ref: str) -> Image: ...

    async def add_layer(self, step: StepSpec, chunks: AsyncIterator[bytes]) -> Image: ...

    async def configure(self, step: StepSpec) -> Image: ...

    async def run(self, spec: RunSpec, output: Output) -> tuple[str, int]: ...

    async def commit(self, container: str, step: StepSpec) -> Image: ...

    async def remove_container(self, container: str) -> None: ...

    async def copy_from(self, image: str, path: str, out: Callable[[bytes], object]) -> None: ...

    async def tag(self, image: str, reference: str) -> None: ...

    async def stat_paths(self, image: str, paths: list[str]) -> dict[str, PathInfo]: ...

    async def squash(self, image: str, base: str, created_by: str, created: int) -> Image: ...

    async def pull(self, reference: str) -> str: ...

    # volumes, for RUN --mount=type=cache (dockyard.builder.mounts)
    async def create_volume(self, name: str, labels: Mapping[str, str], opts: Mapping[str, str]) -> None: ...

    async def list_volumes(self, filters: Sequence[str]) -> list[str]: ...

    async def remove_volume(self, name: str) -> None: ...


# --- progress ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """One thing that happened: a step ``started``/``cached``/``done``/``error``, a ``log`` chunk,
    a ``warning``, or the ``result`` (last, with the image id)."""

    status: str
    step: str = ""
    index: int = 0
    total: int = 0
    log: bytes = b""
    stream: str = ""
    seconds: float = 0.0
    image_id: str = ""
    error: str = ""


Report = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Request:
    """A build: the Dockerfile text, the context dir (already unpacked) and the options."""

    dockerfile: bytes
    dockerfile_name: str
    context: Path
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None
    push: bool = False
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # --secret, by id
    squash: bool = False
    pull: bool = False  # --pull: pull every base image that names a registry, even if present


@dataclass(frozen=True, slots=True)
class Result:
    image_id: str
    steps: int
    cached: int
    seconds: float


def epoch_of(request: Request) -> int:
    """SOURCE_DATE_EPOCH: the option, else the build-arg, else 0 (see the module docstring)."""
    if request.source_date_epoch is not None:
        return request.source_date_epoch
    raw = request.build_args.get("SOURCE_DATE_EPOCH", "")
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise InvalidArgument(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds") from None
    return 0


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


class Builder:
    """Runs builds against ``runtime``; keeps the cache and scratch space under ``state``.

    ``registry`` (the same node, in its registry-client role) is what ``--push`` and the
    registry caches go through; without it those options are refused.
    """

    def __init__(
        self,
        runtime: Runtime,
        state: Path,
        registry: RegistryRuntime | None = None,
        max_download: int = MAX_DOWNLOAD,
    ) -> None:
        self.runtime = runtime
        self.max_download = max_download  # bytes one ADD <url> may fetch
        self.registry = registry
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.cache = BuildCache(state / "cache.json")
        self.scratch = state / "scratch"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir()
        self.cache_volumes = CacheVolumes(state / "cache-volumes.json")

    def new_scratch(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="build-", dir=self.scratch))

    async def prune_cache_volumes(self, keep_seconds: int) -> int:
        """Remove RUN --mount=type=cache volumes unused for ``keep_seconds`` (all when 0)."""
        return await mounts.prune_volumes(self.runtime, self.cache_volumes, keep_seconds)

    async def build(self, request: Request, report: Report) -> Result:
        run = _Build(self, request, report)
        return await run.run()


class _Build:
    def __init__(self, builder: Builder, request: Request, report: Report) -> None:
        self.b = builder
        self.rt = builder.runtime
        self.req = request
        self.report = report
        self.epoch = epoch_of(request)
        self.results: dict[int, Image | None] = {}
        self.bases: dict[int, Image | None] = {}  # each stage's FROM
        self.images: dict[str, Image] = {}
        self.counter = 0
        self.total = 0
        self.cached = 0
        self.executed = 0
        self.used = UsedSteps()  # every step key looked up: what --cache-to exports
        self.shared = RegistryCache(builder.registry) if builder.registry is not None else None

    # -- planning -------------------------------------------------------------------------------

    async def _plan(self) -> Plan:
        df = parse(self.req.dockerfile, self.req.dockerfile_name)
        loop = asyncio.get_running_loop()

        def resolve(ref: str, platform: Platform) -> BaseImage:
            image = asyncio.run_coroutine_threadsafe(self._image(ref), loop).result()
            config = image.config
            return BaseImage(env=tuple(config.get("Env") or ()), onbuild=tuple(config.get("OnBuild") or ()))

        opts = BuildOptions(build_args=dict(self.req.build_args), target=self.req.target)
        return await asyncio.to_thread(plan, df, opts, resolve)

    async def _image(self, ref: str) -> Image:
        if ref not in self.images:
            self.images[ref] = await self._fetch_base(ref)
        return self.images[ref]

    async def _fetch_base(self, ref: str) -> Image:
        """A FROM (or COPY --from) image: pulled when ``--pull`` says so or when it is missing and
        its name says where from, as docker build does; else the node's copy."""
        pullable = names_registry(ref)
        if self.req.pull and pullable:
            return await self.rt.inspect(await self.rt.pull(ref))
        try:
            return await self.rt.inspect(ref)
        except NotFound:
            if not pullable:
                raise NotFound(
                    f"base image {ref!r} is not on this node and names no registry: pull or import it first",
                    reference=ref,
                ) from None
        return await self.rt.inspect(await self.rt.pull(ref))

    # -- the build --------------------------------------------------------------------------------

    async def run(self) -> Result:
        started = time.monotonic()
        self._check_sharing()
        p = await self._plan()
        await self._import_caches()
        for warning in p.warnings:
            await self.report(Progress("warning", error=warning))
        self.total = sum(
            1 + sum(1 for s in st.steps if not isinstance(s.instruction, ins.Arg)) for st in p.stages
        )
        steps = self.total - len(p.stages)  # FROM lines are not steps that can be cached
        multi = len(p.stages) > 1
        for level in p.levels:
            await asyncio.gather(*(in_stage(i, self._stage(p, p.stage(i), multi)) for i in level))
        final = self.results[p.target]
        if final is None:
            raise InvalidArgument("the target stage is empty (FROM scratch with no step): nothing to tag")
        if self.req.squash:
            final = await self._squash(final, self.bases[p.target])
        if self.req.labels:
            pairs = tuple(ins.KeyValue(k, v) for k, v in sorted(self.req.labels.items()))
            label = ins.Label(line=0, end_line=0, original="", pairs=pairs)
            config = imageconfig.apply(final.config, label, StageState())
            final, _ = await self._meta(final, config, imageconfig.created_by(label, config))
        for tag in self.req.tags:
            await self.rt.tag(final.id, tag)
        await self._share(p, final)
        return Result(final.id, steps, self.cached, time.monotonic() - started)

    async def _squash(self, image: Image, base: Image | None) -> Image:
        """--squash: the layers ``image`` adds to its stage's ``base`` as one layer."""
        base_id = base.id if base is not None else ""
        key = step_key("squash", image.id, base_id, str(self.epoch))
        hit = await self._lookup(key)
        if hit is not None:
            return hit
        line = f"merge {image.id} to {base_id or 'scratch'}"
        squashed = await self.rt.squash(image.id, base_id, line, self.epoch)
        self.b.cache.put(key, squashed.id)
        return squashed

    async def _lookup(self, key: str) -> Image | None:
        self.used.add(key)
        if self.req.no_cache:
            return None
        image_id = self.b.cache.get(key)
        if image_id is not None:
            try:
                image = await self.rt.inspect(image_id)
            except NotFound:
                self.b.cache.drop(key)
            else:
                self.b.cache.touch(key)
                return image
        return await self._lookup_imported(key)

    # -- sharing through registries: --cache-from, --cache-to, --push (cachesync.py) ---------------

    @property
    def _with_sharing(self) -> int:
        """The number of steps with the imports, pushes and exports (the progress total)."""
        req = self.req
        return self.total + len(req.cache_from) + (len(req.tags) if req.push else 0) + len(req.cache_to)

    def _check_sharing(self) -> None:
        """Refuse bad sharing options before any work (the servicer checked their syntax)."""
        req = self.req
        if (req.push or req.cache_from or req.cache_to) and self.b.registry is None:
            raise FailedPrecondition("this builder reaches no registry client: --push and --cache-* need one")
        if req.push:
            if not req.tags:
                raise InvalidArgument("--push needs a tag to push to: -t HOST[:PORT]/NAME[:TAG]")
            for tag in req.tags:
                registry_ref(tag, "--push: tag")

    async def _import_caches(self) -> None:
        """Read every --cache-from index; one that cannot be read is a warning (as with buildx)."""
        if self.shared is None or self.req.no_cache:
            return
        for spec in self.req.cache_from:
            title, total = f"importing cache manifest from {spec.ref}", self._with_sharing
            await self.report(Progress("started", title, 0, total))
            t0 = time.monotonic()
            try:
                count = await self.shared.load(spec)
            except DockyardError as exc:
                await self.report(Progress("done", title, 0, total, seconds=time.monotonic() - t0))
                await self.report(Progress("warning", error=f"cache import from {spec.ref} skipped: {exc}"))
                continue
            log = f"{count} step keys\n".encode()
            await self.report(Progress("log", title, 0, total, log=log, stream="stdout"))
            await self.report(Progress("done", title, 0, total, seconds=time.monotonic() - t0))

    async def _lookup_imported(self, key: str) -> Image | None:
        """The step image of ``key`` from a --cache-from registry, pulled into the node and
        recorded in the local cache; None when none lists it or the pull fails (a warning)."""
        if self.shared is None or not self.shared.has(key):
            return None
        try:
            image_id = await self.shared.fetch(key)
            image = await self.rt.inspect(image_id) if image_id else None
        except DockyardError as exc:
            await self.report(Progress("warning", error=f"a cached step image was not pulled: {exc}"))
            return None
        if image is not None:
            self.b.cache.put(key, image.id)
        return image

    def _final_stages(self, p: Plan) -> set[int | None]:
        """The stages whose steps make the final image: the target and the stages it is FROM
        (None: the build's own steps, such as --label)."""
        stages: set[int | None] = {None}
        st: PlannedStage | None = p.stage(p.target)
        while st is not None:
            stages.add(st.index)
            st = p.stage(st.base.stage) if st.base.kind == "stage" and st.base.stage is not None else None
        return stages

    async def _share(self, p: Plan, final: Image) -> None:
        """--push every tag, then --cache-to: each a progress item; a failure names the image made."""
        if self.shared is None:
            return
        made = f"the image {final.id} was built"
        if self.req.tags:
            made += f" and tagged {', '.join(self.req.tags)}"
        if self.req.push:
            for tag in self.req.tags:
                await self._extra(f"pushing {tag}", made, functools.partial(self.shared.push, tag))
        for spec in self.req.cache_to:
            keys = self.used.keys(None if spec.mode == "max" else self._final_stages(p))
            images: dict[str, list[str]] = {}
            for key in keys:
                image_id = self.b.cache.get(key)
                if image_id is not None:
                    images.setdefault(image_id, []).append(key)
            title = f"exporting cache to {spec.ref} (mode={spec.mode})"
            try:
                await self._extra(title, made, functools.partial(self.shared.export, spec, images))
            except DockyardError as exc:
                if not spec.ignore_error:
                    raise
                await self.report(Progress("warning", error=f"{exc} (ignore-error=true: the build goes on)"))

    async def _extra(self, title: str, made: str, work: Callable[[Say], Awaitable[object]]) -> None:
        """One step after the Dockerfile's (a push, an export), its log lines and its outcome."""
        self.counter += 1
        index, total = self.counter, self._with_sharing
        await self.report(Progress("started", title, index, total))
        t0 = time.monotonic()

        async def say(line: str) -> None:
            data = (line + "\n").encode()
            await self.report(Progress("log", title, index, total, log=data, stream="stdout"))

        try:
            await work(say)
        except DockyardError as exc:
            # the same kind of error (UNAVAILABLE stays retryable); the client adds its own prefix
            cause = exc.message.removeprefix("service unavailable: ")
            await self.report(Progress("error", title, index, total, error=cause))
            raise type(exc)(f"{made}, but {title} failed: {cause}", **exc.detail) from None
        await self.report(Progress("done", title, index, total, seconds=time.monotonic() - t0))

    def _title(self, st: PlannedStage, multi: bool, n: int, text: str) -> str:
        count = 1 + sum(1 for s in st.steps if not isinstance(s.instruction, ins.Arg))
        prefix = f"{st.display_name} " if multi else ""
        return f"[{prefix}{n}/{count}] {text}"

    async def _stage(self, p: Plan, st: PlannedStage, multi: bool) -> None:
        self.counter += 1
        title = self._title(st, multi, 1, f"FROM {st.from_.image}" + (f" AS {st.name}" if st.name else ""))
        index = self.counter
        await self.report(Progress("started", title, index, self.total))
        current: Image | None
        if st.base.kind == "image":
            current = await self._image(st.base.ref)
        elif st.base.kind == "stage":
            assert st.base.stage is not None
            current = self.results[st.base.stage]
        else:
            current = None
        self.bases[st.index] = current
        if current is not None and current.config.get("OnBuild"):
            # its triggers run first in this stage (the plan put them there); they are not passed on
            config = {k: v for k, v in current.config.items() if k != "OnBuild"}
            current = Image(current.id, {**current.doc, "config": config}, edited=True)
        await self.report(Progress("done", title, index, self.total))
        state = StageState()
        if current is not None and current.config.get("Shell"):
            state.shell = tuple(current.config["Shell"])
        n = 1
        for step in st.steps:
            inst = step.instruction
            if isinstance(inst, ins.Arg):
                continue
            n += 1
            self.counter += 1
            index = self.counter
            title = self._title(st, multi, n, _display(inst))
            await self.report(Progress("started", title, index, self.total))
            t0 = time.monotonic()
            try:
                current, cached = await self._step(p, st, step, current, state, title, index)
            except Exception as exc:
                await self.report(Progress("error", title, index, self.total, error=str(exc)))
                raise
            status = "cached" if cached else "done"
            self.cached += cached
            await self.report(Progress(status, title, index, self.total, seconds=time.monotonic() - t0))
        self.results[st.index] = current

    async def _step(
        self,
        p: Plan,
        st: PlannedStage,
        step: Step,
        current: Image | None,
        state: StageState,
        title: str,
        index: int,
    ) -> tuple[Image | None, bool]:
        inst = step.instruction
        config = current.config if current is not None else {}
        if isinstance(inst, ins.Workdir):
            return await self._workdir(inst, current, config, state)
        if isinstance(inst, _METADATA):
            new = imageconfig.apply(config, inst, state)
            line = imageconfig.created_by(inst, new)
            return await self._meta(current, new, line)
        if isinstance(inst, ins.Run):
            return await self._run(p, step, inst, current, state, title, index)
        if isinstance(inst, ins.Copy | ins.Add):
            return await self._copy(step, inst, current, config)
        raise InvalidArgument(f"{inst.keyword} is not supported yet")

    async def _workdir(
        self, inst: ins.Workdir, current: Image | None, config: dict[str, Any], state: StageState
    ) -> tuple[Image | None, bool]:
        """WORKDIR: the config, and the dir made when the image lacks it (see the module docstring)."""
        new = imageconfig.apply(config, inst, state)
        line = imageconfig.created_by(inst, new)
        parent = current.id if current is not None else ""
        user = str(config.get("User") or "")
        # whether the dir exists is a function of the parent: a hit needs no look at the image
        key = step_key("workdir", parent, line, _canonical(new), user, str(self.epoch))
        hit = await self._lookup(key)
        if hit is not None:
            return hit, True
        wd = str(new.get("WorkingDir") or "/")
        dest, existing = await self._into(parent, wd, True) if wd != "/" else ("/", {})
        cached = False
        if dest == "/" or dest.strip("/") in existing:
            image, cached = await self._meta(current, new, line)
        else:
            try:  # BuildKit's mkdir takes the USER's ids, 0:0 for one it cannot find
                owner = await self._owner(user, current)
            except InvalidArgument:
                owner = Owner()

            def write(sink: HashSink) -> None:
                writer = LayerWriter(sink, self.epoch, existing)
                for prefix in _prefixes(dest):
                    writer.dir(prefix.lstrip("/"), 0o755, owner)
                writer.close()

            image = await self.rt.add_layer(
                StepSpec(parent, new, line, self.epoch), _stream_from_thread(write)
            )
        self.b.cache.put(key, image.id)
        return image, cached

    async def _meta(self, parent: Image | None, config: dict[str, Any], line: str) -> tuple[Image, bool]:
        """A metadata step: ``parent`` with ``config`` and an empty_layer history entry."""
        key = step_key("meta", parent.id if parent else "", line, _canonical(config), str(self.epoch))
        hit = await self._lookup(key)
        if hit is not None:
            return hit, True
        image = await self.rt.configure(StepSpec(parent.id if parent else "", config, line, self.epoch))
        self.b.cache.put(key, image.id)
        return image, False

    # -- RUN ----------------------------------------------------------------------------------------

    async def _run(
        self,
        p: Plan,
        step: Step,
        inst: ins.Run,
        current: Image | None,
        state: StageState,
        title: str,
        index: int,
    ) -> tuple[Image | None, bool]:
        if current is None:
            raise InvalidArgument("RUN in a stage FROM scratch with nothing in it: there is no shell to run")
        argv = imageconfig.run_argv(inst, state.shell)
        line = imageconfig.run_created_by(argv, step.build_args)
        config = current.config
        env = [*step.env, *p.proxy_env]
        # "none": a network namespace with only lo; "host": the node's (rootless: the runtime's
        # namespace, NATed by slirp4netns), as `dockyard run --network` has them
        network = {"default": "", "none": "none", "host": "host"}.get(inst.network, "")
        workdir = str(config.get("WorkingDir") or "/")
        user = str(config.get("User") or "")
        planned = mounts.plan(step.mounts, workdir, self.req.secrets.keys())
        images: list[str] = []  # the image a from= bind reads ("" for the others)
        reads: list[str] = []  # each mount, and what it reads: that image's id, a context bind's files
        for m in planned:
            source = await self._mount_image(m.mount)
            images.append(source)
            if m.mount.type == "bind" and not source:
                source = await asyncio.to_thread(mounts.context_digest, self.req.context, m.mount)
            reads += [m.key, source]
        parts = (current.id, line, "\n".join(step.env), workdir, user, network, str(self.epoch))
        edited = ("config", _canonical(current.config)) if current.edited else ()
        key = step_key("run", *parts, *reads, *edited)  # no mounts: the key RUN had before mounts existed
        hit = await self._lookup(key)
        if hit is not None:
            return hit, True

        secrets = Redactor(self.req.secrets.values())  # no secret value leaves the step

        async def output(stream: str, data: bytes) -> None:
            data = secrets.feed(stream, data)
            if data:
                await self.report(Progress("log", title, index, self.total, log=data, stream=stream))

        work = self.b.new_scratch() if planned else None
        try:
            async with mounts.mounted(
                planned,
                images,
                context=self.req.context,
                secrets=self.req.secrets,
                scratch=work or self.b.scratch,
                runtime=self.rt,
                caches=self.b.cache_volumes,
            ) as (run_mounts, secret_env):
                spec = RunSpec(current.id, argv, env + secret_env, workdir, user, network, tuple(run_mounts))
                container, code = await self.rt.run(spec, output)
                for stream, rest in secrets.flush():
                    await self.report(Progress("log", title, index, self.total, log=rest, stream=stream))
                try:
                    if code != 0:
                        raise FailedPrecondition(
                            f"process {json.dumps(' '.join(argv))} did not complete successfully: "
                            f"exit code: {code}",
                            exit_code=code,
                        )
                    keep = current.config if current.edited else None
                    step_spec = StepSpec(current.id, keep, line, self.epoch, self.epoch)
                    image = await self.rt.commit(container, step_spec)
                finally:
                    with contextlib.suppress(Exception):
                        await self.rt.remove_container(container)
        finally:
            if work is not None:  # secret files, fetched and copied binds
                await asyncio.to_thread(shutil.rmtree, work, True)
        self.b.cache.put(key, image.id)
        return image, False

    async def _mount_image(self, mount: ins.Mount) -> str:
        """The id of the stage or image a ``from=`` bind mount reads; "" for the others."""
        if mount.type != "bind" or not mount.from_:
            return ""
        if mount.from_stage is not None:
            source = self.results.get(mount.from_stage)
            if source is None:
                raise InvalidArgument(f"RUN --mount from={mount.from_}: that stage is empty")
            return source.id
        return (await self._image(mount.from_)).id

    # -- COPY / ADD ---------------------------------------------------------------------------------

    async def _copy(
        self, step: Step, inst: ins.Copy | ins.Add, current: Image | None, config: dict[str, Any]
    ) -> tuple[Image | None, bool]:
        check_sources(inst)
        chmod = parse_chmod(inst.chmod)
        by_name = any(chown_names(inst.chown))
        workdir = str(config.get("WorkingDir") or "/")
        line = imageconfig.created_by(inst, config)
        parent = current.id if current is not None else ""
        if isinstance(inst, ins.Copy) and inst.from_:
            return await self._copy_from(step, inst, current, config, chmod, workdir, line)
        checksum = inst.checksum if isinstance(inst, ins.Add) else ""
        if checksum:  # the one source is known by its digest: a hit downloads nothing
            unpack = repr(inst.unpack) if isinstance(inst, ins.Add) else ""
            key = step_key("add-checksum", parent, line, checksum, unpack, workdir, str(self.epoch))
            hit = await self._lookup(key)
            if hit is not None:
                return hit, True
        work = self.b.new_scratch()
        try:
            sources = await self._sources(inst, work)
            count = len(sources) + len(inst.contents)
            single_file = count == 1 and (not sources or not (sources[0].contents or sources[0].unpack))
            dest, as_dir = destination(inst.dest, workdir, count, single_file)
            dest, existing = await self._into(parent, dest, as_dir)

            def write(owner: Owner, sink: HashSink) -> None:
                writer = LayerWriter(sink, self.epoch, existing)
                archive_owner = owner if inst.chown else Owner(None, None)
                copy_layer(writer, sources, dest, as_dir, owner, chmod, archive_owner)
                for doc in inst.contents:
                    rel = posixpath.join(dest, doc.name) if as_dir else dest
                    writer.parents(rel)
                    writer.data(rel.lstrip("/"), doc.data.encode(), mode_of(chmod, 0o644, False), owner)
                writer.close()

            # --chown names are looked up only on a miss: the key has the line (--chown=name) and
            # the parent, which fix what they resolve to
            owner = Owner() if by_name else parse_chown(inst.chown)
            probe = HashSink()  # a hash-only pass: the key, and any refusal before a layer is sent
            await asyncio.to_thread(write, owner, probe)
            if not checksum:
                key = step_key("copy", parent, line, probe.digest, str(self.epoch))
                hit = await self._lookup(key)
                if hit is not None:
                    return hit, True
            if by_name:
                owner = await self._owner(inst.chown, current)
            image = await self.rt.add_layer(
                StepSpec(parent, config, line, self.epoch),
                _stream_from_thread(functools.partial(write, owner)),
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        self.b.cache.put(key, image.id)
        return image, False

    async def _sources(self, inst: ins.Copy | ins.Add, work: Path) -> list[Source]:
        """What a COPY/ADD copies, in order: context entries (ADD: tars marked to be extracted
        unless ``--unpack=false``) and, for ADD, URLs downloaded into ``work``."""
        out: list[Source] = []
        for i, raw in enumerate(inst.sources):
            if isinstance(inst, ins.Add) and is_url(raw):
                got = await download(raw, work / f"url-{i}", inst.checksum, self.b.max_download)
                if got.mtime is not None:
                    await asyncio.to_thread(os.utime, got.path, (got.mtime, got.mtime))
                src = Source(got.path, url_filename(raw), contents=False)
                if inst.unpack and await asyncio.to_thread(is_archive, got.path):
                    src = replace(src, unpack=True)
                out.append(src)
                continue
            found = await asyncio.to_thread(context_sources, self.req.context, [raw], inst.keyword)
            if isinstance(inst, ins.Add) and inst.unpack is not False:
                found = await asyncio.to_thread(mark_archives, found)
            out.extend(found)
        return out

    async def _owner(self, chown: str, current: Image | None) -> Owner:
        """``--chown`` as ids: names through the destination image's /etc/passwd and /etc/group."""
        user_named, group_named = chown_names(chown)
        passwd = await self._etc(current, "passwd") if user_named else None
        group = await self._etc(current, "group") if group_named else None
        return parse_chown(chown, passwd, group)

    async def _etc(self, image: Image | None, name: str) -> str | None:
        """The text of ``/etc/<name>`` in ``image`` (None when it has none), at most 16 MiB."""
        if image is None:
            return None
        buf = io.BytesIO()

        def out(data: bytes) -> None:
            if buf.tell() + len(data) > 16 << 20:
                raise InvalidArgument(f"--chown: the image's /etc/{name} is larger than 16 MiB")
            buf.write(data)

        try:
            await self.rt.copy_from(image.id, f"/etc/{name}", out)
        except NotFound:
            return None
        return tar_file_text(buf.getvalue())

    async def _copy_from(
        self,
        step: Step,
        inst: ins.Copy,
        current: Image | None,
        config: dict[str, Any],
        chmod: Chmod | None,
        workdir: str,
        line: str,
    ) -> tuple[Image | None, bool]:
        parent = current.id if current is not None else ""
        if step.source_stage is not None:
            source = self.results.get(step.source_stage)
            if source is None:
                raise InvalidArgument(f"COPY --from={inst.from_}: that stage is empty")
        else:
            source = await self._image(inst.from_ or "")
        key = step_key("copy-from", parent, line, source.id, inst.chown, inst.chmod, workdir, str(self.epoch))
        hit = await self._lookup(key)
        if hit is not None:
            return hit, True
        work = self.b.new_scratch()
        try:
            fetched: list[tuple[Path, list[TarSource]]] = []
            for i, src in enumerate(inst.sources):
                path = work / f"src-{i}.tar"
                found = await self._fetch(source, src, path)
                fetched.append((path, found))
            count = sum(len(found) for _, found in fetched)
            single_file = count == 1 and not fetched[0][1][0].is_dir
            dest, as_dir = destination(inst.dest, workdir, count, single_file)
            dest, existing = await self._into(parent, dest, as_dir)
            owner = await self._owner(inst.chown, current) if inst.chown else Owner(None, None)

            def write(sink: HashSink) -> None:
                writer = LayerWriter(sink, self.epoch, existing)
                for path, found in fetched:
                    with open(path, "rb") as fh:
                        copy_from_tar(writer, fh, found, dest, as_dir, owner, chmod)
                writer.close()

            image = await self.rt.add_layer(
                StepSpec(parent, config, line, self.epoch), _stream_from_thread(write)
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        self.b.cache.put(key, image.id)
        return image, False

    async def _fetch(self, image: Image, src: str, path: Path) -> list[TarSource]:
        """Fetch COPY --from's ``src`` of ``image`` into the tar ``path``; the sources in it.

        A wildcard fetches the dir above its first wildcard part and keeps the entries that
        match (NotFound, docker's line, when none does); ``/`` and ``dir/.`` are a dir's contents.
        """
        where, pattern = split_glob(src)
        raw = "/" + src.lstrip("/")
        fh = await asyncio.to_thread(open, path, "wb")
        try:
            fetch = raw if pattern is None else where if where == "/" else where + "/"
            await self.rt.copy_from(image.id, fetch, fh.write)
        except NotFound:
            if pattern is None:
                raise NotFound(f'COPY failed: "{src}" not found in the source image or stage') from None
            missing = True
        else:
            missing = False
        finally:
            await asyncio.to_thread(fh.close)
        if pattern is None and (where == "/" or raw.endswith("/.")):
            return [TarSource("", True)]

        def scan() -> list[TarSource]:
            with open(path, "rb") as tar:
                return tar_sources(tar, pattern)

        found = [] if missing else await asyncio.to_thread(scan)
        if not found:
            raise NotFound(f'COPY failed: no source files were specified: "{src}" matched nothing')
        return found

    async def _into(self, parent: str, dest: str, as_dir: bool) -> tuple[str, dict[str, Existing]]:
        """Where a COPY to ``dest`` lands in the ``parent`` image, and the directories on the way
        that the image has: a layer must keep their owner and mode (COPY into /tmp leaves it
        1777) and must follow their symlinks (/bin -> usr/bin), as docker's COPY does."""
        if not parent:
            return dest, {}
        folder = dest if as_dir else posixpath.dirname(dest)
        prefixes = _prefixes(folder)
        found = await self.rt.stat_paths(parent, prefixes)
        deepest = next((p for p in reversed(prefixes) if p in found), None)
        if deepest is not None and found[deepest].resolved != deepest:
            resolved = posixpath.join(found[deepest].resolved, posixpath.relpath(folder, deepest))
            folder = posixpath.normpath(resolved)
            dest = folder if as_dir else posixpath.join(folder, posixpath.basename(dest))
            found = await self.rt.stat_paths(parent, _prefixes(folder))
        existing = {
            path.lstrip("/"): Existing(st.mode & 0o7777, Owner(st.uid, st.gid))
            for path, st in found.items()
            if st.is_dir
        }
        return dest, existing


def _prefixes(path: str) -> list[str]:
    """``/a/b/c`` → ``["/a", "/a/b", "/a/b/c"]``."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _display(inst: ins.Instruction) -> str:
    text = " ".join(inst.original.split())
    return text if len(text) <= 200 else text[:197] + "..."


async def _stream_from_thread(write: Callable[[HashSink], None]) -> AsyncIterator[bytes]:
    """Run ``write`` in a thread; yield what it writes, in chunks of about 1 MiB (bounded queue)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    buf = bytearray()

    def put(data: bytes) -> None:
        buf.extend(data)
        if len(buf) >= CHUNK:
            asyncio.run_coroutine_threadsafe(queue.put(bytes(buf)), loop).result()
            buf.clear()

    def produce() -> None:
        try:
            write(HashSink(put))
            if buf:
                asyncio.run_coroutine_threadsafe(queue.put(bytes(buf)), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    task = asyncio.ensure_future(asyncio.to_thread(produce))
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        if not task.done():
            # the consumer went away: drain so the producer can finish
            while not task.done():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.sleep(0)
        await task


def new_build_id() -> str:
    return uuid.uuid4().hex[:12]


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
