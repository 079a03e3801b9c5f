"""Thin aiohttp handlers: docker's HTTP+JSON to client-library calls and back (see convert.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from dockyard.client import AsyncClient
from dockyard.core.errors import DockyardError
from dockyard.engine import convert

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT = web.AppKey("client", AsyncClient)


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure in docker's shape, ``{"message": ...}``, with docker's status code."""
    try:
        return await handler(request)
    except DockyardError as exc:
        return web.json_response({"message": exc.message}, status=convert.status_for(exc))


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK", headers={"API-Version": convert.API_VERSION})


async def version(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"ApiVersion": convert.API_VERSION, "MinAPIVersion": convert.MIN_API_VERSION,
         "Version": "dockyard", "Os": "linux", "Arch": "amd64"}
    )  # fmt: skip


async def containers(request: web.Request) -> web.StreamResponse:
    found = await request.app[CLIENT].containers.list(all=request.query.get("all") in ("1", "true"))
    now = datetime.now(UTC)
    return web.json_response([convert.container_summary(c, now) for c in found])


async def container(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].containers.get(request.match_info["id"])
    return web.json_response(convert.container_inspect(info))


async def images(request: web.Request) -> web.StreamResponse:
    found = await request.app[CLIENT].images.list()
    return web.json_response([convert.image_summary(i) for i in found])


async def image(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].images.get(request.match_info["name"])
    return web.json_response(convert.image_inspect(info))


def build(client: AsyncClient) -> web.Application:
    """The read-only part of the Engine API; version-prefixed paths are a TODO (convert.strip_version)."""
    app = web.Application(middlewares=[docker_errors])
    app[CLIENT] = client
    app.router.add_get("/_ping", ping)
    app.router.add_get("/version", version)
    app.router.add_get("/containers/json", containers)
    app.router.add_get("/containers/{id}/json", container)
    app.router.add_get("/images/json", images)
    app.router.add_get("/images/{name:.+}/json", image)
    return app
