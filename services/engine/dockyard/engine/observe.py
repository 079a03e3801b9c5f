"""``/containers/{id}/top``, ``/stats`` and ``/changes``: what runs and changed inside a container."""

from __future__ import annotations

import contextlib
import json
import os

from aiohttp import web

from dockyard.core.errors import DockyardError
from dockyard.engine import inside_shapes
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()


def _true(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name, "")
    return default if value == "" else value.lower() in ("1", "true", "yes")


@routes.get("/containers/{id}/top")
async def top(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(request.match_info["id"])
    found = await client.containers.top(info.id, request.query.get("ps_args", "").split())
    return json_reply(inside_shapes.top_json(found))


@routes.get("/containers/{id}/changes")
async def changes(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(request.match_info["id"])
    return json_reply(inside_shapes.changes_json(await client.containers.diff(info.id)))


@routes.get("/containers/{id}/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    """One sample (``stream=false``, what ``docker stats --no-stream`` asks), else one a second
    until the client leaves. ``one-shot`` changes nothing: every sample already has its CPU
    difference."""
    client = request.app[CLIENT]
    info = await client.containers.get(request.match_info["id"])
    stream = _true(request, "stream", default=True)
    online_cpus = os.cpu_count() or 1
    sampling = client.containers.stats([info.id], stream=stream)
    samples = aiter(sampling)

    async def next_sample() -> bytes | None:
        async for report in samples:
            for sample in report:
                if sample.id == info.id:
                    return json.dumps(inside_shapes.stats_json(sample, online_cpus)).encode() + b"\n"
        return None

    try:
        first = await next_sample()  # before the status line, so a failure gets docker's status
        if not stream:
            return web.Response(body=first or b"{}", content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        line = first
        with contextlib.suppress(DockyardError, ConnectionResetError):
            while line is not None:
                await response.write(line)
                line = await next_sample()
        return response
    finally:
        sampling.cancel()
