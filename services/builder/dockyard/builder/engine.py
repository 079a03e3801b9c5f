"""The build engine: a planned Dockerfile executed step by step against a runtime node.

The engine holds no image data. A stage stands at a ``Head`` (``head.py``): its last image in the
runtime's store (``Runtime``, a narrow role interface in ``node.py``; ``remote.py`` implements it
over gRPC) and what the metadata steps since did, in memory — an image is stored only by a step
that makes a layer or runs a container, and at a stage's end.
The engine plans the Dockerfile, runs the stages (FROM an image: Inspect; FROM scratch: nothing
yet; FROM a stage: that stage's result) and hands each step to the module of its instruction
family, as BuildKit's dockerfile2llb has a ``dispatch*`` per instruction:

- ``steps/metadata.py``: ENV LABEL CMD … (a new config, a pending history line) and WORKDIR
  (the config, and the directory made when the image lacks it); ``store_head`` at a stage's end;
- ``steps/copy.py``: COPY/ADD from the context or a URL, and ``COPY --from``;
- ``steps/run.py``: RUN, as a container of the current image whose writable layer is committed.

**Cache.** Before doing a step its module computes its key (``cache.py``): the head's ident
(the parent image id, with the config and history lines pending on it) +
the step's history line + what it reads (the COPY tar's digest, computed in a hash-only pass;
the --from image id; an ADD'ed URL's bytes, or its ``--checksum`` so that a hit downloads
nothing; a RUN's environment, user, workdir and network) + the epoch. A hit whose
image is still in the store is used as is (reported ``cached``); a changed file changes its
COPY's digest, hence that step's image id and the key of every later step — exactly the steps
after it re-run. ``no_cache`` skips lookups (and still records the results). A metadata step
stores nothing of its own: it is reported when the image that carries it is stored, ``cached``
when that image came from the cache.

**Reproducible by default.** Every history entry and the image's ``created`` are the epoch.
It is ``SOURCE_DATE_EPOCH`` (the option, or the build-arg of that name). The client sends its
git context's HEAD commit time as that option. Else it is **the newest ``created`` of the
stages' bases** (FROM images), and 0 when every stage is FROM scratch. This is a choice: BuildKit
clamps only when the variable is set, and its images say "now". We want two builds of the same
inputs to give the same image id with no flag. The epoch follows only from inputs: the bases'
ids are in every cache key anyway, and a commit names the context. And images say when they
were made in a way that means something, not 1970 as ko's do.
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
import functools
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from dockyard.builder import instructions as ins
from dockyard.builder import mounts
from dockyard.builder.cache import BuildCache, step_key
from dockyard.builder.cachesync import (
    RegistryCache,
    RegistryRuntime,
    Say,
    UsedSteps,
    in_stage,
)
from dockyard.builder.dockerfile import parse
from dockyard.builder.download import MAX_DOWNLOAD
from dockyard.builder.head import Head
from dockyard.builder.imageconfig import StageState
from dockyard.builder.mounts import CacheVolumes
from dockyard.builder.node import Image, Runtime
from dockyard.builder.plan import BaseImage, BuildOptions, Plan, PlannedStage, Platform, Step, plan
from dockyard.builder.steps.copy import copy_step
from dockyard.builder.steps.metadata import METADATA, meta_step, store_head, workdir_step
from dockyard.builder.steps.run import run_step
from dockyard.core.cacheoptions import CacheSpec
from dockyard.core.errors import DockyardError, FailedPrecondition, InvalidArgument, NotFound
from dockyard.core.names import pullable
from dockyard.core.oci.reference import registry_ref

log = structlog.get_logger("dockyard.builder")


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


def epoch_of(request: Request) -> int | None:
    """SOURCE_DATE_EPOCH: the option, else the build-arg, else None (see the module docstring)."""
    if request.source_date_epoch is not None:
        return request.source_date_epoch
    raw = request.build_args.get("SOURCE_DATE_EPOCH", "")
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise InvalidArgument(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds") from None
    return None


def newest_base_time(bases: Iterable[Image]) -> int:
    """The newest ``created`` of the FROM images, in whole seconds; 0 for none (FROM scratch)."""
    newest = 0
    for base in bases:
        created = base.doc.get("created")
        try:
            moment = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            continue  # no time, or not RFC 3339: it says nothing of when
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        newest = max(newest, int(moment.timestamp()))
    return newest


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
        self.explicit_epoch = epoch_of(request)
        self.epoch = self.explicit_epoch or 0  # decided once the plan has resolved the bases
        self.results: dict[int, Image | None] = {}
        self.bases: dict[int, Image | None] = {}  # each stage's FROM
        self.images: dict[str, Image] = {}
        self.counter = 0
        self.total = 0
        self.cached = 0
        self.executed = 0
        self.used = UsedSteps()  # every step key looked up: what --cache-to exports
        self.shared = RegistryCache(builder.registry) if builder.registry is not None else None

    # -- what the steps need (steps.context.StepContext) ----------------------------------------------

    @property
    def context(self) -> Path:
        return self.req.context

    @property
    def secrets(self) -> Mapping[str, bytes]:
        return self.req.secrets

    @property
    def max_download(self) -> int:
        return self.b.max_download

    @property
    def scratch(self) -> Path:
        return self.b.scratch

    @property
    def cache_volumes(self) -> CacheVolumes:
        return self.b.cache_volumes

    def new_scratch(self) -> Path:
        return self.b.new_scratch()

    def remember(self, key: str, image: Image) -> None:
        self.b.cache.put(key, image.id)

    def stage_result(self, index: int) -> Image | None:
        return self.results.get(index)

    async def log(self, title: str, index: int, stream: str, data: bytes) -> None:
        await self.report(Progress("log", title, index, self.total, log=data, stream=stream))

    # -- planning -------------------------------------------------------------------------------

    async def _plan(self) -> Plan:
        df = parse(self.req.dockerfile, self.req.dockerfile_name)
        loop = asyncio.get_running_loop()

        def resolve(ref: str, platform: Platform) -> BaseImage:
            image = asyncio.run_coroutine_threadsafe(self.image(ref), loop).result()
            config = image.config
            return BaseImage(env=tuple(config.get("Env") or ()), onbuild=tuple(config.get("OnBuild") or ()))

        opts = BuildOptions(build_args=dict(self.req.build_args), target=self.req.target)
        return await asyncio.to_thread(plan, df, opts, resolve)

    async def image(self, ref: str) -> Image:
        if ref not in self.images:
            self.images[ref] = await self._fetch_base(ref)
        return self.images[ref]

    async def _fetch_base(self, ref: str) -> Image:
        """A FROM (or COPY --from) image: pulled when ``--pull`` says so or when it is missing and
        it is a name (not an ID), as docker build does; else the node's copy."""
        by_name = pullable(ref)
        if self.req.pull and by_name:
            return await self.rt.inspect(await self.rt.pull(ref))
        try:
            return await self.rt.inspect(ref)
        except NotFound:
            if not by_name:
                raise NotFound(
                    f"base image {ref!r} is not on this node (an image ID cannot be pulled)",
                    reference=ref,
                ) from None
        return await self.rt.inspect(await self.rt.pull(ref))

    # -- the build --------------------------------------------------------------------------------

    async def run(self) -> Result:
        started = time.monotonic()
        self._check_sharing()
        p = await self._plan()
        if self.explicit_epoch is None:
            self.epoch = newest_base_time(self.images.values())
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
        if self.req.squash and final is not None:
            final = await self._squash(final, self.bases[p.target])
        if self.req.labels:  # on FROM scratch alone too: an image of labels only, as docker makes
            pairs = tuple(ins.KeyValue(k, v) for k, v in sorted(self.req.labels.items()))
            label = ins.Label(line=0, end_line=0, original="", pairs=pairs)
            final, _ = await store_head(self, meta_step(Head.of(final), label, StageState()))
        if final is None:
            raise InvalidArgument("the target stage is empty (FROM scratch with no step): nothing to tag")
        for tag in self.req.tags:
            await self.rt.tag(final.id, tag)
        await self._share(p, final)
        return Result(final.id, steps, self.cached, time.monotonic() - started)

    async def _squash(self, image: Image, base: Image | None) -> Image:
        """--squash: the layers ``image`` adds to its stage's ``base`` as one layer."""
        base_id = base.id if base is not None else ""
        key = step_key("squash", image.id, base_id, str(self.epoch))
        hit = await self.lookup(key)
        if hit is not None:
            return hit
        line = f"merge {image.id} to {base_id or 'scratch'}"
        squashed = await self.rt.squash(image.id, base_id, line, self.epoch)
        self.b.cache.put(key, squashed.id)
        return squashed

    async def lookup(self, key: str) -> Image | None:
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
            raise type(exc)(f"{made}, but {title} failed: {cause}", reason=exc.reason, **exc.detail) from None
        await self.report(Progress("done", title, index, total, seconds=time.monotonic() - t0))

    async def _stage(self, p: Plan, st: PlannedStage, multi: bool) -> None:
        self.counter += 1
        count = 1 + sum(1 for s in st.steps if not isinstance(s.instruction, ins.Arg))
        prefix = f"{st.display_name} " if multi else ""
        title = f"[{prefix}1/{count}] FROM {st.from_.image}" + (f" AS {st.name}" if st.name else "")
        index = self.counter
        await self.report(Progress("started", title, index, self.total))
        base: Image | None
        if st.base.kind == "image":
            base = await self.image(st.base.ref)
        elif st.base.kind == "stage":
            assert st.base.stage is not None
            base = self.results[st.base.stage]
        else:
            base = None
        self.bases[st.index] = base
        head = Head.of(base)
        if base is not None and base.config.get("OnBuild"):
            # its triggers run first in this stage (the plan put them there); they are not passed on
            head = Head(base, {k: v for k, v in base.config.items() if k != "OnBuild"})
        await self.report(Progress("done", title, index, self.total))
        state = StageState()
        if head.config.get("Shell"):
            state.shell = tuple(head.config["Shell"])
        waiting: list[tuple[str, int, bool]] = []  # metadata steps to report: title, index, started
        n = 1
        for step in st.steps:
            inst = step.instruction
            if isinstance(inst, ins.Arg):
                continue
            n += 1
            self.counter += 1
            index = self.counter
            title = f"[{prefix}{n}/{count}] {_display(inst)}"
            if isinstance(inst, METADATA) and not isinstance(inst, ins.Workdir):
                head = meta_step(head, inst, state)  # in memory: reported with the image it ends in
                waiting.append((title, index, False))
                continue
            await self.report(Progress("started", title, index, self.total))
            t0 = time.monotonic()
            try:
                head, cached = await self._step(p, step, head, state, title, index)
            except Exception as exc:
                await self.report(Progress("error", title, index, self.total, error=str(exc)))
                raise
            if cached is None:  # a WORKDIR that made no layer: a metadata step after all
                waiting.append((title, index, True))
                continue
            await self._settle(waiting, cached)
            status = "cached" if cached else "done"
            self.cached += cached
            await self.report(Progress(status, title, index, self.total, seconds=time.monotonic() - t0))
        image, cached = await store_head(self, head)
        await self._settle(waiting, cached)
        self.results[st.index] = image

    async def _settle(self, waiting: list[tuple[str, int, bool]], cached: bool) -> None:
        """Report the metadata steps ``waiting`` now that the image carrying them is stored:
        ``cached`` when it came from the cache. Their start is reported only now (a WORKDIR's
        already was), so that thousands of them are not shown running meanwhile."""
        status = "cached" if cached else "done"
        for title, index, started in waiting:
            if not started:
                await self.report(Progress("started", title, index, self.total))
            await self.report(Progress(status, title, index, self.total))
        self.cached += len(waiting) if cached else 0
        waiting.clear()

    async def _step(
        self, p: Plan, step: Step, head: Head, state: StageState, title: str, index: int
    ) -> tuple[Head, bool | None]:
        """A step that may store an image: the new head, and whether it was cached (None: it
        stored nothing, a WORKDIR whose directory exists)."""
        inst = step.instruction
        if isinstance(inst, ins.Workdir):
            return await workdir_step(self, inst, head, state)
        if isinstance(inst, ins.Run):
            image, cached = await run_step(self, p.proxy_env, step, inst, head, state, title, index)
        elif isinstance(inst, ins.Copy | ins.Add):
            image, cached = await copy_step(self, step, inst, head)
        else:
            raise InvalidArgument(f"{inst.keyword} is not supported yet")
        return Head.of(image), cached


def _display(inst: ins.Instruction) -> str:
    text = " ".join(inst.original.split())
    return text if len(text) <= 200 else text[:197] + "..."


def new_build_id() -> str:
    return uuid.uuid4().hex[:12]


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
