"""The Builds gRPC service: take the options and the context stream, run the engine, stream progress.

The context is unpacked while it arrives (a worker thread reads a bounded queue fed by the
request stream: memory stays at a few MiB whatever its size) into the build's scratch dir, which
is removed when the build ends. Progress goes out as the engine reports it; a failed build ends
the stream with the error's status (the ErrorInterceptor maps it) after its ``error`` event.
Events: ``dockyard.build.started`` and ``dockyard.build.finished`` (``ok``, image id, steps,
cached steps, seconds, or the error), through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import structlog

from dockyard.api.builds.v1 import builds_pb2 as pb
from dockyard.api.builds.v1 import builds_pb2_grpc
from dockyard.builder.engine import Builder, Progress, Request, new_build_id
from dockyard.builder.layers import extract_context
from dockyard.core.errors import InvalidArgument
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
    def __init__(self, builder: Builder, publisher: Publisher, source: str) -> None:
        self.builder = builder
        self.publisher = publisher
        self.source = source

    async def Build(
        self, request_iterator: AsyncIterator[pb.BuildInput], context: Any
    ) -> AsyncIterator[pb.BuildEvent]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("options"):
            raise InvalidArgument("the first Build message must be the options")
        o = first.options
        if o.push:
            raise InvalidArgument("build --push is not supported yet: push the tags after the build")
        if not o.dockerfile_content:
            raise InvalidArgument("no Dockerfile: send its content in the options")
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
            )
            self._emit(
                Subject.BUILD_STARTED, build_id, tags=list(o.tags), target=o.target, dockerfile=o.dockerfile
            )
            queue: asyncio.Queue[Progress | None] = asyncio.Queue(maxsize=256)

            async def report(p: Progress) -> None:
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
                self._emit(
                    Subject.BUILD_FINISHED, build_id, ok=False, error=str(exc)[:2000], tags=list(o.tags)
                )
                raise
            self._emit(
                Subject.BUILD_FINISHED,
                build_id,
                ok=True,
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
        return pb.PruneCacheResponse(entries_removed=removed)

    def _emit(self, subject: Subject, build_id: str, **data: Any) -> None:
        self.publisher.publish(new_event(subject, self.source, build_id, data))


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
