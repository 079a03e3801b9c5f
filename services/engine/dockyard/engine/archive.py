"""``/containers/{id}/archive`` (``docker cp`` both ways) and ``/containers/{id}/export``.

Tars stream through in the platform's chunks (at most 1 MiB each, a few in flight), never whole.
The path's stat docker's CLI wants in a header is the first member of a tar of that path: the
copy is cancelled once that header is read.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dockyard.client.calls import Stream
from dockyard.core.errors import DockyardError, InvalidArgument, NotFound
from dockyard.core.streams import ChunkReader
from dockyard.engine import inside_shapes
from dockyard.engine.replies import error_reply
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()

TAR = "application/x-tar"
CHUNK = 1 << 20
_IN_FLIGHT = 8  # chunks of an upload between the request and the platform


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required (path=…)")
    return path


def _first_member(chunks: Stream[bytes]) -> tarfile.TarInfo | None:
    try:
        with tarfile.open(fileobj=io.BufferedReader(ChunkReader(chunks)), mode="r|") as tar:
            return tar.next()
    finally:
        chunks.cancel()


async def _stat(request: web.Request, container: str, path: str) -> dict[str, Any]:
    """docker's ContainerPathStat of ``path``; NotFound in dockerd's words when it is missing."""
    if posixpath.normpath("/" + path) == "/":  # a tar of / holds what is inside, not / itself
        return inside_shapes.path_stat("/", 4096, 0o40755, datetime.now(UTC))
    itself = path[: -len("/.")] if path.endswith("/.") else path  # dir/. is dir's contents: stat dir
    sync = request.app[CLIENT].sync
    try:
        member = await asyncio.to_thread(_first_member, sync.containers.copy_from(container, itself))
    except NotFound:
        member = None
    if member is None:
        raise NotFound(inside_shapes.missing_file(path, request.match_info["id"]))
    return inside_shapes.tar_path_stat(member)


async def _send_tar(
    request: web.Request, container: str, path: str, headers: dict[str, str]
) -> web.StreamResponse:
    """The tar of ``path`` as the body; a failure after the status line cuts the connection, so
    the client sees a truncated tar rather than one that looks whole."""
    chunks = request.app[CLIENT].containers.copy_from(container, path)
    response = web.StreamResponse(headers={"Content-Type": TAR, **headers})
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except (DockyardError, ConnectionResetError):
        chunks.cancel()
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


@routes.head("/containers/{id}/archive")
async def stat(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].containers.get(request.match_info["id"])
    found = await _stat(request, info.id, _path(request))
    return web.Response(
        status=200, headers={inside_shapes.STAT_HEADER: inside_shapes.path_stat_header(found)}
    )


@routes.get("/containers/{id}/archive")
async def copy_from(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].containers.get(request.match_info["id"])
    path = _path(request)
    found = await _stat(request, info.id, path)
    return await _send_tar(
        request, info.id, path, {inside_shapes.STAT_HEADER: inside_shapes.path_stat_header(found)}
    )


@routes.get("/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    """The container's filesystem as a tar (its mounts are not in it, as docker's)."""
    info = await request.app[CLIENT].containers.get(request.match_info["id"])
    return await _send_tar(request, info.id, "/", {})


class _Upload:
    """A request body handed to the worker thread that sends it to the platform, a few chunks at
    a time: the thread's iterator waits for the next chunk on the event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_IN_FLIGHT)

    def chunks(self) -> Iterator[bytes]:
        while (chunk := asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()) is not None:
            yield chunk

    async def offer(self, chunk: bytes | None, sending: asyncio.Future[Any]) -> bool:
        """Queue ``chunk`` (None: the end); False when the send has ended (failed) meanwhile."""
        put = asyncio.ensure_future(self._queue.put(chunk))
        await asyncio.wait({put, sending}, return_when=asyncio.FIRST_COMPLETED)
        if put.done():
            return True
        put.cancel()
        return False

    def end_now(self) -> None:
        """Unblock the thread whatever is queued (the client left): the platform sees a cut tar."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


@routes.put("/containers/{id}/archive")
async def copy_to(request: web.Request) -> web.StreamResponse:
    """Extract the tar in the body into the directory ``path`` (which must exist). docker's
    ``noOverwriteDirNonDir`` and ``copyUIDGID`` are accepted; owners are the container's root."""
    client = request.app[CLIENT]
    info = await client.containers.get(request.match_info["id"])
    path = _path(request)
    upload = _Upload()
    sending = asyncio.ensure_future(client.containers.copy_to(info.id, path, upload.chunks()))
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            if not await upload.offer(chunk, sending):
                break
        else:
            await upload.offer(None, sending)
        await sending
    except NotFound:
        return error_reply(404, inside_shapes.missing_file(path, request.match_info["id"]))
    finally:
        if not sending.done():
            upload.end_now()
            sending.cancel()
    return web.Response(status=200)
