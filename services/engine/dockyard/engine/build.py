"""``POST /build``: docker's legacy builder (``DOCKER_BUILDKIT=0 docker build``) over ``client.builds``.

The request body is the context tar. The builder takes the Dockerfile before the context, and the
tar may hold it anywhere (docker's CLI adds one from outside the context at the end), so the body
is spooled to a private file first (at most MAX_CONTEXT bytes, gzip undone), the Dockerfile read
from it, and the tar streamed on to the builder, whose context rules (no path or link leaving the
context) apply as for ``dockyard build``. Progress goes out as the legacy builder's JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from dockyard.client.types import BuildOptions
from dockyard.core.errors import DockyardError, InvalidArgument
from dockyard.engine import imageshapes
from dockyard.engine.state import CLIENT, SCRATCH
from dockyard.engine.streams import CHUNK, JsonStream, file_chunks

routes = web.RouteTableDef()

MAX_CONTEXT = 8 << 30  # bytes of (uncompressed) context a build may send
MAX_DOCKERFILE = 1 << 20
_GZIP = b"\x1f\x8b"


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


def options(request: web.Request) -> BuildOptions:
    query = request.query
    if query.get("remote"):
        raise InvalidArgument("remote build contexts are not supported: send the context as a tar")
    return BuildOptions(
        context="",
        tags=tuple(query.getall("t", [])),
        dockerfile=imageshapes.dockerfile_member(query.get("dockerfile", "")),
        build_args=imageshapes.json_map(query.get("buildargs", ""), "buildargs"),
        labels=imageshapes.json_map(query.get("labels", ""), "labels"),
        target=query.get("target", ""),
        no_cache=_flag(request, "nocache"),
        pull=_flag(request, "pull"),
    )


async def spool(request: web.Request, directory: Path) -> Path:
    """The body in a new 0600 file under ``directory``, ungzipped, refused past MAX_CONTEXT."""
    fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix="context-", suffix=".tar", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            inflate: zlib._Decompress | None = None
            written = 0
            first = True
            while block := await request.content.read(CHUNK):
                if first:
                    first = False
                    if block.startswith(_GZIP):  # docker build --compress
                        inflate = zlib.decompressobj(wbits=31)
                for data in _inflated(inflate, block):
                    written += len(data)
                    if written > MAX_CONTEXT:
                        raise InvalidArgument(f"the build context is larger than {MAX_CONTEXT >> 30} GiB")
                    await asyncio.to_thread(out.write, data)
            if inflate is not None and not inflate.eof:
                raise InvalidArgument("the build context is not valid gzip: it ends before its end")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return Path(name)


def _inflated(inflate: zlib._Decompress | None, block: bytes) -> Iterator[bytes]:
    """``block`` ungzipped, at most CHUNK bytes at a time (a small block may inflate a thousandfold)."""
    if inflate is None:
        yield block
        return
    pending = block
    while pending:
        try:
            data = inflate.decompress(pending, CHUNK)
        except zlib.error as exc:
            raise InvalidArgument(f"the build context is not valid gzip: {exc}") from None
        pending = inflate.unconsumed_tail
        if data:
            yield data


def read_dockerfile(context: Path, member: str) -> bytes:
    """The Dockerfile at ``member`` of the context tar: a regular file, at most MAX_DOCKERFILE."""
    try:
        with tarfile.open(context, "r:") as tar:
            for info in tar:
                if posixpath.normpath(info.name) != member:
                    continue
                if not info.isreg():
                    raise InvalidArgument(f"the Dockerfile {member} in the context is not a regular file")
                if info.size > MAX_DOCKERFILE:
                    raise InvalidArgument(
                        f"the Dockerfile {member} is larger than {MAX_DOCKERFILE >> 20} MiB"
                    )
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file has content
                return handle.read()
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the build context is not a tar: {exc}") from None
    raise InvalidArgument(f"Cannot locate specified Dockerfile: {member}")


@routes.post("/build")
async def build(request: web.Request) -> web.StreamResponse:
    wanted = options(request)
    quiet = _flag(request, "q")
    context = await spool(request, request.app[SCRATCH])
    try:
        dockerfile = await asyncio.to_thread(read_dockerfile, context, wanted.dockerfile)
        events = request.app[CLIENT].builds.build_from_tar(wanted, dockerfile, file_chunks(context))
        stream = JsonStream(request)
        try:
            async for event in events:
                if event.status == "result":
                    for line in imageshapes.build_result(event.image_id, wanted.tags, quiet):
                        await stream.send(line)
                elif not quiet:
                    for line in imageshapes.build_messages(event):
                        await stream.send(line)
        except DockyardError as exc:
            if stream.response is None:  # docker's CLI shows a streamed error best, as dockerd sends it
                await stream.send({"stream": ""})
            return await stream.fail(exc)
        except ConnectionResetError:
            events.cancel()
            return stream.cut()
        return await stream.finish()
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(context.unlink)
