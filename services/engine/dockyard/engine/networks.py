"""``/networks/…``: docker's network verbs over ``client.networks``.

The platform's built-in modes (bridge, host, none) are listed as docker lists its default
networks; only user networks can be removed, connected to or disconnected from.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.client.types import NetworkInfo
from dockyard.engine import resource_shapes as shapes
from dockyard.engine.replies import error_reply, json_reply
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()


async def _body(request: web.Request) -> object:
    return await request.json() if request.can_read_body else {}


async def _network(request: web.Request) -> NetworkInfo:
    return await request.app[CLIENT].networks.get(request.match_info["id"])


@routes.get("/networks")
async def list_networks(request: web.Request) -> web.StreamResponse:
    filters = shapes.parse_filters(request.query.get("filters", ""))
    found = await request.app[CLIENT].networks.list()
    return json_reply([shapes.network(n) for n in found if shapes.network_matches(n, filters)])


@routes.get("/networks/{id}")
async def inspect(request: web.Request) -> web.StreamResponse:
    return json_reply(shapes.network(await _network(request)))


@routes.post("/networks/create")
async def create(request: web.Request) -> web.StreamResponse:
    wanted = shapes.network_create(await _body(request))
    created = await request.app[CLIENT].networks.create(
        wanted.name, subnet=wanted.subnet, gateway=wanted.gateway, labels=wanted.labels, driver=wanted.driver
    )
    return json_reply({"Id": created.id, "Warning": wanted.warning}, status=201)


@routes.delete("/networks/{id}")
async def remove(request: web.Request) -> web.StreamResponse:
    found = await _network(request)
    if found.builtin:
        return error_reply(403, f"{found.name} is a pre-defined network and cannot be removed")
    await request.app[CLIENT].networks.remove(found.id)
    return web.Response(status=204)


@routes.post("/networks/{id}/connect")
async def connect(request: web.Request) -> web.StreamResponse:
    container, aliases, ip = shapes.network_connect(await _body(request))
    found = await _network(request)
    if found.builtin:
        return error_reply(403, f"a container cannot be connected to the {found.name} network")
    await request.app[CLIENT].networks.connect(found.id, container, aliases=aliases, ip=ip)
    return web.Response(status=200)


@routes.post("/networks/{id}/disconnect")
async def disconnect(request: web.Request) -> web.StreamResponse:
    container, force = shapes.network_disconnect(await _body(request))
    found = await _network(request)
    if found.builtin:
        return error_reply(403, f"a container cannot be disconnected from the {found.name} network")
    await request.app[CLIENT].networks.disconnect(found.id, container, force=force)
    return web.Response(status=200)


@routes.post("/networks/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    filters = shapes.parse_filters(request.query.get("filters", ""))
    if any(filters.values()):
        return error_reply(400, "network prune takes no filters here (label=, until= are not supported)")
    pruned = await request.app[CLIENT].networks.prune()
    return json_reply({"NetworksDeleted": list(pruned.deleted)})
