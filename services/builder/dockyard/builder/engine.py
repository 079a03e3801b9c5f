"""The build engine: a planned Dockerfile executed step by step against a runtime node.

The engine holds no images. The state of a stage after each step is an image in the runtime's
store (``Runtime``, a narrow role interface; ``remote.py`` implements it over gRPC), so:

- FROM an image: Inspect; FROM scratch: nothing yet; FROM a stage: that stage's result.
- metadata (ENV LABEL CMD …): the new config section (``imageconfig.apply``) → ``configure``,
  a new image whose history gains an ``empty_layer`` entry; ARG leaves no history (BuildKit).
- COPY/ADD from the context: a reproducible layer tar (``layers.py``) → ``add_layer``;
  ``COPY --from``: the stage's files fetched through a created (never started) container.
- RUN: a container of the current image (argv through the SHELL, the step's environment, the
  image's WorkingDir and User, ``--network``), attached (output streamed as progress), its
  writable layer committed with docker's ``RUN …`` history line, then removed.
- WORKDIR sets the config only: runc makes the directory when a container starts in it.

**Cache.** Before doing a step the engine computes its key (``cache.py``): parent image id +
the step's history line + what it reads (the COPY tar's digest, computed in a hash-only pass;
the --from image id; a RUN's environment, user, workdir and network) + the epoch. A hit whose
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

Stages of one plan level are built concurrently; within a stage, steps are sequential.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from dockyard.builder import imageconfig
from dockyard.builder import instructions as ins
from dockyard.builder.cache import BuildCache, step_key
from dockyard.builder.dockerfile import parse
from dockyard.builder.imageconfig import StageState
from dockyard.builder.layers import (
    HashSink,
    LayerWriter,
    Owner,
    context_sources,
    copy_from_tar,
    copy_layer,
    destination,
    parse_chmod,
    parse_chown,
)
from dockyard.builder.plan import BaseImage, BuildOptions, Plan, PlannedStage, Platform, Step, plan
from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound

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
    """Runs builds against ``runtime``; keeps the cache and scratch space under ``state``."""

    def __init__(self, runtime: Runtime, state: Path) -> None:
        self.runtime = runtime
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.cache = BuildCache(state / "cache.json")
        self.scratch = state / "scratch"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir()

    def new_scratch(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="build-", dir=self.scratch))

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
        self.images: dict[str, Image] = {}
        self.counter = 0
        self.total = 0
        self.cached = 0
        self.executed = 0

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
            try:
                self.images[ref] = await self.rt.inspect(ref)
            except NotFound:
                raise NotFound(
                    f"base image {ref!r} is not on this node: pull or import it first", reference=ref
                ) from None
        return self.images[ref]

    # -- the build --------------------------------------------------------------------------------

    async def run(self) -> Result:
        started = time.monotonic()
        p = await self._plan()
        for warning in p.warnings:
            await self.report(Progress("warning", error=warning))
        self.total = sum(
            1 + sum(1 for s in st.steps if not isinstance(s.instruction, ins.Arg)) for st in p.stages
        )
        steps = self.total - len(p.stages)  # FROM lines are not steps that can be cached
        multi = len(p.stages) > 1
        for level in p.levels:
            await asyncio.gather(*(self._stage(p, p.stage(i), multi) for i in level))
        final = self.results[p.target]
        if final is None:
            raise InvalidArgument("the target stage is empty (FROM scratch with no step): nothing to tag")
        if self.req.labels:
            pairs = tuple(ins.KeyValue(k, v) for k, v in sorted(self.req.labels.items()))
            label = ins.Label(line=0, end_line=0, original="", pairs=pairs)
            config = imageconfig.apply(final.config, label, StageState())
            final, _ = await self._meta(final, config, imageconfig.created_by(label, config))
        for tag in self.req.tags:
            await self.rt.tag(final.id, tag)
        return Result(final.id, steps, self.cached, time.monotonic() - started)

    async def _lookup(self, key: str) -> Image | None:
        if self.req.no_cache:
            return None
        image_id = self.b.cache.get(key)
        if image_id is None:
            return None
        try:
            image = await self.rt.inspect(image_id)
        except NotFound:
            self.b.cache.drop(key)
            return None
        self.b.cache.touch(key)
        return image

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
        if isinstance(inst, _METADATA):
            new = imageconfig.apply(config, inst, state)
            line = imageconfig.created_by(inst, new)
            return await self._meta(current, new, line)
        if isinstance(inst, ins.Run):
            return await self._run(p, step, inst, current, state, title, index)
        if isinstance(inst, ins.Copy | ins.Add):
            return await self._copy(step, inst, current, config)
        raise InvalidArgument(f"{inst.keyword} is not supported yet")

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
        if inst.mounts:
            raise InvalidArgument("RUN --mount is not supported yet")
        argv = imageconfig.run_argv(inst, state.shell)
        line = imageconfig.run_created_by(argv, step.build_args)
        config = current.config
        env = [*step.env, *p.proxy_env]
        network = {"default": "", "none": "none", "host": "host"}.get(inst.network, "")
        workdir = str(config.get("WorkingDir") or "/")
        user = str(config.get("User") or "")
        key = step_key("run", current.id, line, "\n".join(step.env), workdir, user, network, str(self.epoch))
        hit = await self._lookup(key)
        if hit is not None:
            return hit, True

        async def output(stream: str, data: bytes) -> None:
            await self.report(Progress("log", title, index, self.total, log=data, stream=stream))

        spec = RunSpec(current.id, argv, env, workdir, user, network)
        container, code = await self.rt.run(spec, output)
        try:
            if code != 0:
                raise FailedPrecondition(
                    f"process {json.dumps(' '.join(argv))} did not complete successfully: exit code: {code}",
                    exit_code=code,
                )
            image = await self.rt.commit(container, StepSpec(current.id, None, line, self.epoch, self.epoch))
        finally:
            with contextlib.suppress(Exception):
                await self.rt.remove_container(container)
        self.b.cache.put(key, image.id)
        return image, False

    # -- COPY / ADD ---------------------------------------------------------------------------------

    async def _copy(
        self, step: Step, inst: ins.Copy | ins.Add, current: Image | None, config: dict[str, Any]
    ) -> tuple[Image | None, bool]:
        if isinstance(inst, ins.Add) and any("://" in s for s in inst.sources):
            raise InvalidArgument("ADD of a URL is not supported yet")
        owner = parse_chown(inst.chown)
        chmod = parse_chmod(inst.chmod)
        workdir = str(config.get("WorkingDir") or "/")
        line = imageconfig.created_by(inst, config)
        parent = current.id if current is not None else ""
        if isinstance(inst, ins.Copy) and inst.from_:
            return await self._copy_from(step, inst, parent, owner, chmod, workdir, line)
        sources = await asyncio.to_thread(context_sources, self.req.context, inst.sources, inst.keyword)
        count = len(sources) + len(inst.contents)
        single_file = count == 1 and (not sources or not sources[0].contents)
        dest, as_dir = destination(inst.dest, workdir, count, single_file)

        def write(sink: HashSink) -> None:
            writer = LayerWriter(sink, self.epoch)
            copy_layer(writer, sources, dest, as_dir, owner, chmod)
            for doc in inst.contents:
                rel = posixpath.join(dest, doc.name) if as_dir else dest
                writer.parents(rel)
                writer.data(rel.lstrip("/"), doc.data.encode(), chmod or 0o644, owner)
            writer.close()

        probe = HashSink()
        await asyncio.to_thread(write, probe)
        key = step_key("copy", parent, line, probe.digest, str(self.epoch))
        hit = await self._lookup(key)
        if hit is not None:
            return hit, True
        image = await self.rt.add_layer(
            StepSpec(parent, config, line, self.epoch), _stream_from_thread(write)
        )
        self.b.cache.put(key, image.id)
        return image, False

    async def _copy_from(
        self,
        step: Step,
        inst: ins.Copy,
        parent: str,
        owner: Owner,
        chmod: int | None,
        workdir: str,
        line: str,
    ) -> tuple[Image | None, bool]:
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
        owner = owner if inst.chown else Owner(None, None)
        dest, as_dir = destination(inst.dest, workdir, len(inst.sources), True)
        as_dir = as_dir and (inst.dest.endswith("/") or len(inst.sources) > 1)
        work = self.b.new_scratch()
        try:
            fetched = []
            for i, src in enumerate(inst.sources):
                path = work / f"src-{i}.tar"
                fh = await asyncio.to_thread(open, path, "wb")
                try:
                    await self.rt.copy_from(source.id, "/" + src.lstrip("/"), fh.write)
                finally:
                    await asyncio.to_thread(fh.close)
                fetched.append(path)

            def write(sink: HashSink) -> None:
                writer = LayerWriter(sink, self.epoch)
                for path in fetched:
                    with open(path, "rb") as fh:
                        copy_from_tar(writer, fh, dest, as_dir, owner, chmod)
                writer.close()

            config = (await self.rt.inspect(parent)).config if parent else {}
            image = await self.rt.add_layer(
                StepSpec(parent, config, line, self.epoch), _stream_from_thread(write)
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        self.b.cache.put(key, image.id)
        return image, False


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
