"""``/images/…`` and ``/commit``: docker's image verbs over ``client.images``.

Pull, push and import stream docker's JSON progress (see streams.JsonStream); save streams the
docker-archive tar out and load streams the request's tar in, a chunk at a time. A push's
X-Registry-Auth is checked for shape only: the platform pushes with its own registry logins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import structlog
from aiohttp import web

from dockyard.client import dockerjson
from dockyard.client.types import PullProgress, PushedImage
from dockyard.core.errors import DockyardError, InvalidArgument, NotFound
from dockyard.engine import imageshapes
from dockyard.engine.containers import filters
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT
from dockyard.engine.streams import JsonStream, body_chunks, relay

log = structlog.get_logger("dockyard.engine")
routes = web.RouteTableDef()


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


def _name(request: web.Request) -> str:
    return request.match_info["name"]


@routes.get("/images/json")
async def list_images(request: web.Request) -> web.StreamResponse:
    everything = request.query.get("all", "").lower() in ("1", "true")
    found = await request.app[CLIENT].images.list(all=everything, filters=filters(request))
    return json_reply([dockerjson.image_summary(i) for i in found])


@routes.get("/images/search")
async def search(request: web.Request) -> web.StreamResponse:
    return json_reply([])  # the platform searches no registry index


@routes.get("/images/get")
async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


@routes.get("/images/{name:.+}/get")
async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [_name(request)])


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    """The images as a docker-archive, streamed as the platform makes it. A failure after the
    first byte cuts the connection, so the client never takes a short tar for a whole one."""
    if not names:
        raise InvalidArgument("names is required: the images to save")
    chunks = request.app[CLIENT].images.save(names, format="docker-archive")
    response: web.StreamResponse | None = None
    try:
        async for block in chunks:
            if response is None:
                response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
                await response.prepare(request)
            await response.write(block)
    except DockyardError as exc:
        if response is None:
            raise
        log.warning("save cut short", images=names, error=exc.message)
        if request.transport is not None:
            request.transport.close()
        return response
    if response is None:
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
    await response.write_eof()
    return response


@routes.post("/images/load")
async def load(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT].sync
    loop = asyncio.get_running_loop()
    loaded = await asyncio.to_thread(client.images.load, body_chunks(request, loop))
    stream = JsonStream(request)
    for line in imageshapes.loaded_lines([(i.id, i.tags) for i in loaded]):  # quiet: no progress, as dockerd
        await stream.send(line)
    return await stream.finish()


@routes.post("/images/create")
async def create(request: web.Request) -> web.StreamResponse:
    """``docker pull`` (fromImage, tag) or ``docker import`` (fromSrc=-: the tar is the body)."""
    query = request.query
    if "fromSrc" in query:
        return await _import(request)
    source = query.get("fromImage", "")
    if not source:
        raise InvalidArgument("fromImage (a pull) or fromSrc (an import) is required")
    tag = query.get("tag", "")
    reference = imageshapes.with_tag(source, tag)
    shown = tag or reference.rsplit("/", 1)[-1].partition(":")[2] or "latest"
    client = request.app[CLIENT].sync
    stream = JsonStream(request)

    async def send(p: PullProgress) -> None:
        await stream.send(imageshapes.progress_message(p, shown))

    try:
        platform = query.get("platform", "")  # docker pull --platform
        await relay(lambda report: client.images.pull(reference, platform=platform, on_progress=report), send)
    except DockyardError as exc:
        return await stream.fail(exc)
    except ConnectionResetError:  # the client left: the pull ended with the send that failed
        return stream.cut()
    return await stream.finish()


async def _import(request: web.Request) -> web.StreamResponse:
    query = request.query
    if query["fromSrc"] != "-":
        raise InvalidArgument("only fromSrc=- is served (the tarball in the request body), not a URL")
    repo = query.get("repo", "")
    reference = imageshapes.with_tag(repo, query.get("tag", "")) if repo else ""
    client = request.app[CLIENT].sync
    loop = asyncio.get_running_loop()
    info = await asyncio.to_thread(
        client.images.import_tar,
        body_chunks(request, loop),
        reference,
        changes=query.getall("changes", []),
        message=query.get("message", ""),
    )
    stream = JsonStream(request)
    await stream.send({"status": info.id})
    return await stream.finish()


@routes.get("/images/{name:.+}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].images.get(_name(request))
    return json_reply(dockerjson.image_inspect(info))


@routes.get("/images/{name:.+}/history")
async def history(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.images.get(_name(request))
    entries = await client.images.history(info.id)
    return json_reply(imageshapes.history_items(entries, info.id, info.tags))


@routes.post("/images/{name:.+}/tag")
async def tag(request: web.Request) -> web.StreamResponse:
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repo is required: the new name")
    await request.app[CLIENT].images.tag(
        _name(request), imageshapes.with_tag(repo, request.query.get("tag", ""))
    )
    return web.Response(status=201)


@routes.post("/images/{name:.+}/push")
async def push(request: web.Request) -> web.StreamResponse:
    """Push one tag, or every tag of the repository when ``tag`` is empty (``push --all-tags``)."""
    imageshapes.registry_auth(request.headers.get("X-Registry-Auth", ""))
    name, tag = _name(request), request.query.get("tag", "")
    client = request.app[CLIENT]
    if tag:
        references = [imageshapes.with_tag(name, tag)]
    else:
        found = await client.images.list()
        references = sorted({t for i in found for t in i.tags if t.rpartition(":")[0] == name})
        if not references:
            raise NotFound(f"An image does not exist locally with the tag: {name}")
    stream = JsonStream(request)

    async def send(p: PullProgress) -> None:
        await stream.send(imageshapes.progress_message(p))

    def pusher(reference: str) -> Callable[[Callable[[PullProgress], None]], PushedImage]:
        return lambda report: client.sync.images.push(reference, on_progress=report)

    try:
        for reference in references:
            pushed = await relay(pusher(reference), send)
            await stream.send(imageshapes.push_result(reference.rpartition(":")[2], pushed))
    except DockyardError as exc:
        return await stream.fail(exc)
    except ConnectionResetError:
        return stream.cut()
    return await stream.finish()


@routes.delete("/images/{name:.+}")
async def remove(request: web.Request) -> web.StreamResponse:
    removal = await request.app[CLIENT].images.remove_detailed(_name(request), force=_flag(request, "force"))
    return json_reply(imageshapes.removal_items(removal))  # noprune: the platform keeps no parents


@routes.post("/images/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    everything = imageshapes.prune_all(filters(request))
    pruned = await request.app[CLIENT].images.prune(all=everything)
    return json_reply(imageshapes.prune_reply(pruned))


@routes.post("/commit")
async def commit(request: web.Request) -> web.StreamResponse:
    query = request.query
    container = query.get("container", "")
    if not container:
        raise InvalidArgument("container is required: the container to commit")
    text = await request.text() if request.can_read_body else ""
    config = json.loads(text) if text.strip() else None  # docker's CLI sends null, or nothing
    repo = query.get("repo", "")
    image_id = await request.app[CLIENT].containers.commit(
        container,
        imageshapes.with_tag(repo, query.get("tag", "")) if repo else "",
        message=query.get("comment", ""),
        author=query.get("author", ""),
        changes=[*query.getall("changes", []), *imageshapes.commit_changes(config)],
    )
    return json_reply({"Id": image_id}, status=201)
