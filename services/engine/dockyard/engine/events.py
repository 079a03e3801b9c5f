"""``GET /events``: the platform's CloudEvents as docker's event messages, one JSON a line.

``since`` replays from JetStream (past any restart, as far as the stream keeps); ``until`` in the
past ends the stream after the replay, one in the future ends it at that time; without ``until``
it follows until the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from dockyard.core.errors import DockyardError
from dockyard.engine import resource_shapes as shapes
from dockyard.engine.state import CLIENT

routes = web.RouteTableDef()
log = structlog.get_logger("dockyard.engine")

# How often a quiet stream checks that its client is still there and its until has not passed:
# each open stream holds a worker thread, which must not outlive the client.
_CHECK_S = 1.0


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    filters = shapes.parse_filters(request.query.get("filters", ""))
    wanted = shapes.server_filters(filters)
    since = shapes.event_time(request.query.get("since", ""))
    until = shapes.event_time(request.query.get("until", ""))
    now = datetime.now(UTC)
    if since is not None and since > now and until is None:
        since = None  # from a future time on: that is from now on
    past_until = until if until is not None and until <= now else None
    stream = request.app[CLIENT].events.stream(since=since, until=past_until, filters=wanted)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    events = aiter(stream)
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if until is not None and past_until is None and datetime.now(UTC) >= until:
                break
            if request.transport is None or request.transport.is_closing():
                break
            pending = pending or asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=_CHECK_S)
            if not done:
                continue
            pending = None
            try:
                event = done.pop().result()
            except StopAsyncIteration:
                break
            message = shapes.event_message(event)
            if message is None or not shapes.event_matches(message, filters):
                continue
            if until is not None and event.time is not None and event.time > until:
                break
            await response.write(json.dumps(message).encode() + b"\n")
    except ConnectionResetError:
        pass
    except DockyardError as exc:  # the status is sent: the stream just ends, as dockerd's does
        log.warning("events stream failed", error=exc.message)
    finally:
        stream.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
