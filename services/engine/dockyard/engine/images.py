"""``/images/…``: docker's image verbs over ``client.images``."""

from __future__ import annotations

from aiohttp import web

from dockyard.engine import convert
from dockyard.engine.containers import filters
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()


@routes.get("/images/json")
async def list_images(request: web.Request) -> web.StreamResponse:
    everything = request.query.get("all", "").lower() in ("1", "true")
    found = await request.app[CLIENT].images.list(all=everything, filters=filters(request))
    return json_reply([convert.image_summary(i) for i in found])


@routes.get("/images/{name:.+}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].images.get(request.match_info["name"])
    return json_reply(convert.image_inspect(info))
