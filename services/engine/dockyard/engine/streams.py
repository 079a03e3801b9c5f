"""Streaming between docker's HTTP and the client library: JSON progress out, request bodies in.

A progress reply sends its status with its first message, as dockerd does: a failure before it
(no such image, a bad reference) is an ordinary error reply with its status code; one after it
is docker's ``errorDetail`` message at the end of the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from aiohttp import web

from dockyard.core.errors import DockyardError
from dockyard.engine.imageshapes import Message, error_message

CHUNK = 1 << 20
T = TypeVar("T")
R = TypeVar("R")


class JsonStream:
    """docker's JSON messages, one a line, on one response prepared with the first of them."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def send(self, message: Message) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.response.prepare(self.request)
        await self.response.write(json.dumps(message).encode() + b"\r\n")

    async def fail(self, exc: DockyardError) -> web.StreamResponse:
        """The failure as the reply (nothing sent yet: raised, for its status) or as its last line."""
        if self.response is None:
            raise exc
        await self.send(error_message(exc.message))
        return await self.finish()

    def cut(self) -> web.StreamResponse:
        """The reply of a client that left mid-stream (nothing more can reach it)."""
        return self.response if self.response is not None else web.Response(status=499)

    async def finish(self) -> web.StreamResponse:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.response.prepare(self.request)
        await self.response.write_eof()
        return self.response


async def relay(
    call: Callable[[Callable[[T], None]], R], send: Callable[[T], Coroutine[Any, Any, None]]
) -> R:
    """``call(report)`` in a worker thread, each ``report(item)`` sent on the event loop: a slow
    client slows the call (the report waits for its send), a gone one ends it (the send's error)."""
    loop = asyncio.get_running_loop()

    def report(item: T) -> None:
        asyncio.run_coroutine_threadsafe(send(item), loop).result()

    return await asyncio.to_thread(call, report)


def body_chunks(request: web.Request, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The request body for a worker thread, read on the event loop a chunk at a time."""
    while True:
        block = asyncio.run_coroutine_threadsafe(request.content.read(CHUNK), loop).result()
        if not block:
            return
        yield block


def file_chunks(path: Any) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            yield block
