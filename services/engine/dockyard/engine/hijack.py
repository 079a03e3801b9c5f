"""docker's hijacked connections: after ``101 UPGRADED`` the HTTP connection is a raw byte pipe.

``attach`` and ``exec start`` answer this way; the client then writes stdin on the same socket
and may half-close it at stdin's end while it still reads the output. aiohttp's own protocol
would close the whole connection at that half-close, so the transport is taken over: bytes in go
to a queue, bytes out are written with the transport's flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from dockyard.engine.convert import frame

RAW = "application/vnd.docker.raw-stream"  # a TTY's bytes as they come
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"  # 8-byte frames per stream (see convert.frame)
INPUT_BUFFER = 1 << 20  # stop reading the client past this much unconsumed stdin


class Pipe(asyncio.Protocol):
    """The connection after the upgrade."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._input: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._buffered = 0
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.Event()

    # --- asyncio.Protocol ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._buffered += len(data)
        self._input.put_nowait(data)
        if self._buffered > INPUT_BUFFER:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._input.put_nowait(None)
        return True  # half-closed: keep writing the output

    def connection_lost(self, exc: Exception | None) -> None:
        self._input.put_nowait(None)
        self.closed.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- for the handler -------------------------------------------------------------------------------
    async def read(self) -> bytes | None:
        """The next bytes of stdin; None at its end (half-close or disconnect)."""
        data = await self._input.get()
        if data is not None:
            self._buffered -= len(data)
            if self._buffered <= INPUT_BUFFER // 2:
                self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting while the client is slow; ConnectionResetError once it is gone."""
        if self.closed.is_set() or self.transport.is_closing():
            raise ConnectionResetError("the client went away")
        self.transport.write(data)
        await self._writable.wait()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.close()


async def upgrade(request: web.Request, content_type: str) -> tuple[web.StreamResponse, Pipe]:
    """Answer ``101 UPGRADED`` and take the connection (docker's clients all ask with ``Upgrade:
    tcp``; one that did not still gets the raw stream after the status line).

    Return the response from the handler after closing the pipe: aiohttp then ends the request
    without writing anything more on the connection.
    """
    response = web.StreamResponse(
        status=101, headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"}
    )
    response.force_close()  # once the handler returns, aiohttp closes rather than reads a next request
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    pipe = Pipe(transport)
    transport.set_protocol(pipe)
    return response, pipe


async def relay(
    session: Any,
    pipe: Pipe,
    want: Mapping[str, bool],
    *,
    tty: bool,
    stdin: bool,
    on_other: Callable[[Any], None],
) -> None:
    """An attach's or exec's output to the client (raw with a TTY, else framed), the client's
    bytes to its stdin (its half-close ends stdin), until the session ends or the client leaves.
    Messages that are not output (``exit``, ``started``) go to ``on_other``. The session is
    cancelled on the way out; DockyardError and ConnectionResetError propagate."""

    async def feed() -> None:
        while (data := await pipe.read()) is not None:
            if stdin:
                session.write(data)
        if stdin:
            session.close_stdin()

    feeder = asyncio.create_task(feed())
    outputs = iter(session)
    done = object()
    try:
        while (item := await asyncio.to_thread(next, outputs, done)) is not done:
            out: Any = item
            if out.kind not in ("stdout", "stderr"):
                on_other(out)
            elif want.get(out.kind):
                await pipe.write(out.data if tty else frame(out.kind, out.data))
    finally:
        session.cancel()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
