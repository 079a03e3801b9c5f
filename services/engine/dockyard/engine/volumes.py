"""``/volumes/…``: docker's volume verbs over ``client.volumes``."""

from __future__ import annotations

import contextlib

from aiohttp import web

from dockyard.core.errors import FailedPrecondition, NotFound
from dockyard.engine import resource_shapes as shapes
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()


@routes.get("/volumes")
async def list_volumes(request: web.Request) -> web.StreamResponse:
    filters = shapes.volume_filters(shapes.parse_filters(request.query.get("filters", "")))
    found = await request.app[CLIENT].volumes.list(filters=filters)
    return json_reply({"Volumes": [shapes.volume(v) for v in found], "Warnings": []})


@routes.get("/volumes/{name}")
async def inspect(request: web.Request) -> web.StreamResponse:
    return json_reply(shapes.volume(await request.app[CLIENT].volumes.get(request.match_info["name"])))


@routes.post("/volumes/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = await request.json() if request.can_read_body else {}
    name, driver, labels, options = shapes.volume_create(body)
    created = await request.app[CLIENT].volumes.create(name, labels=labels, driver=driver, options=options)
    return json_reply(shapes.volume(created), status=201)


@routes.delete("/volumes/{name}")
async def remove(request: web.Request) -> web.StreamResponse:
    force = request.query.get("force", "").lower() in ("1", "true")
    await request.app[CLIENT].volumes.remove(request.match_info["name"], force=force)
    return web.Response(status=204)


@routes.post("/volumes/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    """Unused anonymous volumes (docker's default since API 1.42), or every unused one with
    ``all=true``; label filters narrow either."""
    client = request.app[CLIENT]
    filters = shapes.parse_filters(request.query.get("filters", ""))
    shapes.check_filters(filters, ("label", "label!", "all"), "volume prune")
    labels = [f"{k}={v}" for k, values in filters.items() if k != "all" for v in values]
    if shapes.prune_all(filters):
        pruned = await client.volumes.prune(filters=labels)
        return json_reply({"VolumesDeleted": list(pruned.deleted), "SpaceReclaimed": pruned.space_reclaimed})
    if "label!" in filters:  # the platform's List has no negative label filter; its Prune has
        labels = [label for label in labels if not label.startswith("label!=")]
        excluded = {
            v.name
            for value in filters["label!"]
            for v in await client.volumes.list(filters=[f"label={value}"])
        }
    else:
        excluded = set()
    sizes = {v.name: v.size for v in (await client.images.disk_usage()).volumes}
    deleted, reclaimed = [], 0
    for candidate in await client.volumes.list(filters=["dangling=true", *labels]):
        if not candidate.anonymous or candidate.name in excluded:
            continue
        with contextlib.suppress(NotFound, FailedPrecondition):  # gone, or taken since the listing
            await client.volumes.remove(candidate.name)
            deleted.append(candidate.name)
            reclaimed += sizes.get(candidate.name, 0)
    return json_reply({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})
