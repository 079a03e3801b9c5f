"""``/containers/prune``, ``/{id}/rename``, ``/{id}/update``, ``/{id}/pause`` and ``/unpause``."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.engine import inside_shapes
from dockyard.engine.containers import filters
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()


@routes.post("/containers/prune")
async def prune(request: web.Request) -> web.StreamResponse:
    """Every container that is not running; with ``until``/``label`` filters, those that match
    (removed here one by one: the platform's prune takes no filters, and reports no space then)."""
    client = request.app[CLIENT]
    wanted = filters(request)
    if not wanted:
        done = await client.containers.prune()
        return json_reply({"ContainersDeleted": list(done.deleted), "SpaceReclaimed": done.space_reclaimed})
    matches = inside_shapes.prune_filter(wanted, datetime.now(UTC))
    deleted: list[str] = []
    for info in await client.containers.list(all=True):
        if matches(info):
            with contextlib.suppress(NotFound, FailedPrecondition):  # gone, or started meanwhile
                await client.containers.remove(info.id)
                deleted.append(info.id)
    return json_reply({"ContainersDeleted": deleted, "SpaceReclaimed": 0})


@routes.post("/containers/{id}/rename")
async def rename(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name", "").lstrip("/")
    if not name:
        raise InvalidArgument("a new name is required (name=…)")
    await request.app[CLIENT].containers.rename(request.match_info["id"], name)
    return web.Response(status=204)


@routes.post("/containers/{id}/update")
async def update(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    body: Any = await request.json() if request.can_read_body else {}
    resources = inside_shapes.update_resources(body)
    info = await client.containers.get(request.match_info["id"])
    policy = inside_shapes.restart_policy_name(body)
    if policy and policy != (info.restart_policy.partition(":")[0] or "no"):
        raise InvalidArgument(
            f"the restart policy of a container cannot be changed here ({policy!r}); recreate the "
            "container with --restart"
        )
    if resources != type(resources)():
        await client.containers.update(info.id, resources)
    return json_reply({"Warnings": []})


@routes.post("/containers/{id}/pause")
async def pause(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(request.match_info["id"])
    if info.state == "paused":
        raise FailedPrecondition(f"container {info.id} is already paused")
    if info.state != "running":
        raise FailedPrecondition(f"container {info.id} is not running")
    await client.containers.pause(info.id)
    return web.Response(status=204)


@routes.post("/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(request.match_info["id"])
    if info.state != "paused":
        raise FailedPrecondition(f"container {info.id} is not paused")
    await client.containers.unpause(info.id)
    return web.Response(status=204)
