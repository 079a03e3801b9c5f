"""The Builds gRPC service: take the options and the context stream, run the engine, stream progress.

The context is unpacked while it arrives (a worker thread reads a bounded queue fed by the
request stream: memory stays at a few MiB whatever its size) into the build's scratch dir, which
is removed when the build ends. Progress goes out as the engine reports it; a failed build ends
the stream with the error's status (the ErrorInterceptor maps it) after its ``error`` event.
Events, through the outbox: ``dockyard.build.started``; ``dockyard.build.step`` for each step
done or taken from the cache (its title, ``cached``, seconds); then ``dockyard.build.finished``
(image id, steps, cached steps, seconds) or ``dockyard.build.failed`` (the error, the failing
step, its exit code, the tail of its output).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import structlog

from dockyard.api.builds.v1 import builds_pb2 as pb
from dockyard.api.builds.v1 import builds_pb2_grpc
from dockyard.builder.engine import Builder, Progress, Request, new_build_id
from dockyard.builder.inflight import InFlight
from dockyard.builder.layers import extract_context
from dockyard.core.cacheoptions import CacheSpec
from dockyard.core.errors import DockyardError, InvalidArgument
from dockyard.core.events import Publisher, Subject, new_event

log = structlog.get_logger("dockyard.builder")


def _event(p: Progress) -> pb.BuildEvent:
    return pb.BuildEvent(
        step=p.step,
        status=p.status,
        log=p.log,
        image_id=p.image_id,
        error=p.error,
        index=p.index,
        total=p.total,
        seconds=p.seconds,
        stream=p.stream,
    )


class BuildsServicer(builds_pb2_grpc.BuildsServicer):
    def __init__(
        self,
        builder: Builder,
        publisher: Publisher,
        source: str,
        inflight: InFlight,
        runtime_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self.builder = builder
        self.runtime_ready = runtime_ready  # waits out a runtime starting beside us, else Unavailable
        self.publisher = publisher
        self.source = source
        self.inflight = inflight  # builds begun and not ended, on disk (dockyard.builder.inflight)

    async def Build(
        self, request_iterator: AsyncIterator[pb.BuildInput], context: Any
    ) -> AsyncIterator[pb.BuildEvent]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("options"):
            raise InvalidArgument("the first Build message must be the options")
        o = first.options
        cache_from = tuple(_cache(c, "--cache-from") for c in o.cache_from)
        cache_to = tuple(_cache(c, "--cache-to") for c in o.cache_to)
        if not o.dockerfile_content:
            raise InvalidArgument("no Dockerfile: send its content in the options")
        await self.runtime_ready()
        build_id = new_build_id()
        work = self.builder.new_scratch()
        ctx = work / "context"
        try:
            await _unpack(request_iterator, ctx)
            request = Request(
                dockerfile=o.dockerfile_content,
                dockerfile_name=o.dockerfile or "Dockerfile",
                context=ctx,
                tags=tuple(o.tags),
                build_args=dict(o.build_args),
                target=o.target,
                no_cache=o.no_cache,
                labels=dict(o.labels),
                source_date_epoch=o.source_date_epoch if o.HasField("source_date_epoch") else None,
                squash=o.squash,
                pull=o.pull,
                push=o.push,
                cache_from=cache_from,
                cache_to=cache_to,
                secrets=dict(o.secrets),
            )
            await asyncio.to_thread(self.inflight.begin, build_id, list(o.tags))
            self._emit(
                Subject.BUILD_STARTED, build_id, tags=list(o.tags), target=o.target, dockerfile=o.dockerfile
            )
            queue: asyncio.Queue[Progress | None] = asyncio.Queue(maxsize=256)

            steps = _StepTrail()

            async def report(p: Progress) -> None:
                if steps.see(p):
                    self._emit(Subject.BUILD_STEP, build_id, **steps.finished(p))
                await queue.put(p)

            async def go() -> Any:
                try:
                    return await self.builder.build(request, report)
                finally:
                    await queue.put(None)

            task = asyncio.create_task(go())
            try:
                while (item := await queue.get()) is not None:
                    yield _event(item)
                result = await task
            except BaseException as exc:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                self._emit(Subject.BUILD_FAILED, build_id, tags=list(o.tags), **steps.failure(exc))
                self.inflight.end(build_id)
                raise
            self.inflight.end(build_id)
            self._emit(
                Subject.BUILD_FINISHED,
                build_id,
                image=result.image_id,
                tags=list(o.tags),
                steps=result.steps,
                cached=result.cached,
                seconds=round(result.seconds, 3),
            )
            log.info(
                "build_finished",
                build=build_id,
                image=result.image_id,
                cached=result.cached,
                steps=result.steps,
            )
            yield pb.BuildEvent(
                status="result",
                image_id=result.image_id,
                total=result.steps,
                cached_steps=result.cached,
                seconds=result.seconds,
                build_id=build_id,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def PruneCache(self, request: pb.PruneCacheRequest, context: Any) -> pb.PruneCacheResponse:
        removed = await asyncio.to_thread(self.builder.cache.prune, int(request.keep_seconds))
        volumes = await self.builder.prune_cache_volumes(int(request.keep_seconds))
        return pb.PruneCacheResponse(entries_removed=removed, cache_mounts_removed=volumes)

    def _emit(self, subject: Subject, build_id: str, **data: Any) -> None:
        self.publisher.publish(new_event(subject, self.source, build_id, data))


class _StepTrail:
    """What the build events say about steps: which finished, and for a failure, the step that
    failed with the tail of its output (kept per step, at most ``TAIL`` bytes)."""

    TAIL = 2048

    def __init__(self) -> None:
        self.tails: dict[int, bytes] = {}
        self.failed: Progress | None = None

    def see(self, p: Progress) -> bool:
        """Take note of ``p``; whether it finished a step (an event to publish)."""
        if p.status == "log":
            self.tails[p.index] = (self.tails.get(p.index, b"") + p.log)[-self.TAIL :]
        elif p.status == "error":
            self.failed = p
        return p.status in ("done", "cached") and "] FROM " not in p.step

    def finished(self, p: Progress) -> dict[str, Any]:
        self.tails.pop(p.index, None)
        return {"step": p.step, "index": p.index, "total": p.total, "cached": p.status == "cached",
                "seconds": round(p.seconds, 3)}  # fmt: skip

    def failure(self, exc: BaseException) -> dict[str, Any]:
        data: dict[str, Any] = {"error": str(exc)[:2000]}
        if self.failed is not None:
            data["step"] = self.failed.step
            data["output_tail"] = self.tails.get(self.failed.index, b"").decode(errors="replace")
        if isinstance(exc, DockyardError) and "exit_code" in exc.detail:
            data["exit_code"] = exc.detail["exit_code"]
        return data


def _cache(msg: pb.BuildCache, flag: str) -> CacheSpec:
    return CacheSpec(msg.ref, msg.mode or "min", msg.ignore_error).checked(flag)


async def _unpack(request_iterator: AsyncIterator[pb.BuildInput], root: Any) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

    def chunks() -> Iterator[bytes]:
        while (item := asyncio.run_coroutine_threadsafe(queue.get(), loop).result()) is not None:
            yield item

    async def feed() -> None:
        try:
            async for message in request_iterator:
                if message.context_chunk:
                    await queue.put(message.context_chunk)
        finally:
            await queue.put(None)

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.to_thread(_extract_all, chunks(), root)
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder


def _extract_all(chunks: Iterator[bytes], root: Any) -> None:
    root.mkdir(parents=True, exist_ok=True)
    try:
        extract_context(chunks, root)
    finally:
        for _ in chunks:  # an empty context (no tar at all) or trailing bytes: drain the stream
            pass
