"""``/containers/…``: docker's container verbs over ``client.containers``.

docker's ``run`` is create, attach, wait, start, in that order, as separate requests: the attach
of a created container waits here until ``/start`` hands it the start (see state.Pending), so the
platform starts the container only once its output is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dockyard.client import dockerjson
from dockyard.client.containers import Attachment
from dockyard.core.errors import DockyardError, FailedPrecondition, InvalidArgument, NotFound
from dockyard.engine import convert, hijack, resource_shapes
from dockyard.engine.replies import json_reply
from dockyard.engine.state import ATTACHES, CLIENT

routes = web.RouteTableDef()

_WAIT_POLL_S = 0.2
_KILL_WAIT_S = 10.0


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"{name}={value!r} is not a number") from None


def filters(request: web.Request) -> tuple[str, ...]:
    """docker's ``filters`` query (``{"name": ["web"], "status": {"running": true}}``) as
    ``key=value`` strings, the form ``ps --filter`` and the client library take."""
    parsed = resource_shapes.parse_filters(request.query.get("filters", ""))
    return tuple(f"{key}={value}" for key, values in parsed.items() for value in values)


def _id(request: web.Request) -> str:
    return request.match_info["id"]


@routes.get("/containers/json")
async def list_containers(request: web.Request) -> web.StreamResponse:
    found = await request.app[CLIENT].containers.list(all=_flag(request, "all"), filters=filters(request))
    if (limit := _int(request, "limit")) is not None and limit > 0:
        found = found[:limit]
    now = datetime.now(UTC)
    return json_reply([dockerjson.container_summary(c, now) for c in found])


@routes.post("/containers/create")
async def create(request: web.Request) -> web.StreamResponse:
    body = await request.json() if request.can_read_body else {}
    options = convert.run_options(body, request.query.get("name", ""), request.query.get("platform", ""))
    created = await request.app[CLIENT].containers.create(options)
    return json_reply({"Id": created.id, "Warnings": []}, status=201)


@routes.get("/containers/{id}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].containers.get(_id(request))
    return json_reply(dockerjson.container_inspect(info))


@routes.post("/containers/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(_id(request))
    if info.state in ("running", "paused"):
        return web.Response(status=304)
    waiting = request.app[ATTACHES].waiting(info.id)
    try:
        if waiting is not None:  # an attach is connected: it starts the container
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await waiting.put(started)
            await started  # the runtime's failure text is runc's, which docker's CLI reads for 126/127
        else:
            await client.containers.start(info.id)
    except DockyardError:
        if info.auto_remove:  # as dockerd: a --rm container that cannot start is gone
            with contextlib.suppress(DockyardError):
                await client.containers.remove(info.id, force=True)
        raise
    return web.Response(status=204)


@routes.post("/containers/{id}/stop")
async def stop(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(_id(request))
    if info.state not in ("running", "paused"):
        return web.Response(status=304)
    await client.containers.stop(info.id, timeout=_int(request, "t"))
    return web.Response(status=204)


@routes.post("/containers/{id}/restart")
async def restart(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(_id(request))
    if info.state in ("running", "paused"):
        await client.containers.stop(info.id, timeout=_int(request, "t"))
    await client.containers.start(info.id)
    return web.Response(status=204)


@routes.post("/containers/{id}/kill")
async def kill(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(_id(request))
    if info.state not in ("running", "paused"):
        raise FailedPrecondition(f"container {info.id} is not running")
    signal = request.query.get("signal") or "KILL"
    await client.containers.kill(info.id, signal)
    if signal.upper().removeprefix("SIG") in ("KILL", "9"):
        # as dockerd: a SIGKILL's answer comes once the container is down, so an inspect right
        # after it sees the exit (137), not a container still running
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.containers.wait(info.id), _KILL_WAIT_S)
    return web.Response(status=204)


@routes.post("/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    """``not-running`` (default): now if it is not running; ``next-exit``: after its next exit
    (a created one is waited for to start); ``removed``: once it is also gone."""
    client = request.app[CLIENT]
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"condition={condition!r}: want not-running, next-exit or removed")
    info = await client.containers.get(_id(request))
    # as dockerd: the status line goes out now, the body at the exit. docker's CLI waits for the
    # headers before it sends /start, so holding them back would wait forever.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    result: dict[str, Any] = {"StatusCode": 0, "Error": None}
    try:
        result["StatusCode"] = await client.containers.wait(info.id, next_exit=condition != "not-running")
        if condition == "removed":
            with contextlib.suppress(NotFound):
                while True:
                    await client.containers.get(info.id)
                    await asyncio.sleep(_WAIT_POLL_S)
    except DockyardError as exc:  # the status is sent: the failure goes in the body, as docker's
        result = {"StatusCode": -1, "Error": {"Message": exc.message}}
    await response.write(json.dumps(result).encode() + b"\n")
    await response.write_eof()
    return response


@routes.delete("/containers/{id}")
async def remove(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(_id(request))
    force = _flag(request, "force")
    if info.state in ("running", "paused") and not force:
        raise FailedPrecondition(
            f"cannot remove container {info.name}: container is running: stop the container before "
            "removing or force remove"
        )
    await client.containers.remove(info.id, force=force, volumes=_flag(request, "v"))
    return web.Response(status=204)


@routes.get("/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    info = await client.containers.get(_id(request))
    want = {"stdout": _flag(request, "stdout"), "stderr": _flag(request, "stderr")}
    if not any(want.values()):
        raise InvalidArgument("you must choose at least one stream (stdout=1 or stderr=1)")
    query = request.query
    window = convert.log_window(
        query.get("tail", ""), query.get("since", ""), query.get("until", ""), datetime.now(UTC)
    )
    stream = client.containers.logs(info.id, follow=_flag(request, "follow"), tail=window.tail)
    response = web.StreamResponse(headers={"Content-Type": hijack.RAW if info.tty else hijack.MULTIPLEXED})
    await response.prepare(request)
    stamps = _flag(request, "timestamps")
    try:
        async for line in stream:
            if window.past(line.time):
                break
            if not want[line.stream] or window.before(line.time):
                continue
            stamp = (
                f"{line.time.isoformat().replace('+00:00', 'Z')} ".encode() if stamps and line.time else b""
            )
            # a frame a line, as dockerd's json-file logs: a chunk the platform read may hold several
            for data in line.data.splitlines(keepends=True):
                await response.write(stamp + data if info.tty else convert.frame(line.stream, stamp + data))
    finally:
        stream.cancel()
    await response.write_eof()
    return response


@routes.post("/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    attaches = request.app[ATTACHES]
    info = await client.containers.get(_id(request))
    want = {"stdout": _flag(request, "stdout"), "stderr": _flag(request, "stderr")}
    if not _flag(request, "stream"):  # logs=1 alone: what was written so far, then the end
        return await _attach_logs(request, info, want if _flag(request, "logs") else {})
    stdin = _flag(request, "stdin")
    waiting = attaches.wait_for_start(info.id) if info.state == "created" else None
    response, pipe = await hijack.upgrade(request, hijack.RAW if info.tty else hijack.MULTIPLEXED)
    started: asyncio.Future[None] | None = None
    try:
        if waiting is not None:
            started = await waiting.get()
        session = await asyncio.to_thread(
            client.sync.containers.open_attach, info.id, start=started is not None, stdin=stdin
        )
        attaches.live[info.id] = session
        await _pump(session, pipe, want, tty=info.tty, stdin=stdin, started=started)
    except DockyardError as exc:
        if started is not None and not started.done():
            started.set_exception(exc)
    finally:
        attaches.done(info.id)
        if started is not None and not started.done():
            started.set_exception(ConnectionResetError("the attach ended before the container started"))
        pipe.close()
    return response


async def _attach_logs(request: web.Request, info: Any, want: dict[str, bool]) -> web.StreamResponse:
    response, pipe = await hijack.upgrade(request, hijack.RAW if info.tty else hijack.MULTIPLEXED)
    stream = request.app[CLIENT].sync.containers.logs(info.id)
    lines = iter(stream)
    done = object()
    try:
        while (item := await asyncio.to_thread(next, lines, done)) is not done:
            line: Any = item
            if want.get(line.stream):
                await pipe.write(line.data if info.tty else convert.frame(line.stream, line.data))
    except ConnectionResetError:
        pass
    finally:
        stream.cancel()
        pipe.close()
    return response


async def _pump(
    session: Attachment,
    pipe: hijack.Pipe,
    want: dict[str, bool],
    *,
    tty: bool,
    stdin: bool,
    started: asyncio.Future[None] | None,
) -> None:
    """Output to the client, the client's bytes to stdin, until the container exits or the
    client leaves; ``started`` learns when the attach started the container."""

    def on_other(out: Any) -> None:
        if out.kind == "started" and started is not None and not started.done():
            started.set_result(None)

    try:
        await hijack.relay(session, pipe, want, tty=tty, stdin=stdin, on_other=on_other)
    except ConnectionResetError:
        pass
    except DockyardError as exc:
        if started is not None and not started.done():
            started.set_exception(exc)


@routes.post("/containers/{id}/resize")
async def resize(request: web.Request) -> web.StreamResponse:
    """The terminal of an attach made through this API (``docker run -it``, ``docker attach``)."""
    info = await request.app[CLIENT].containers.get(_id(request))
    rows, cols = _int(request, "h") or 0, _int(request, "w") or 0
    session = request.app[ATTACHES].live.get(info.id)
    if session is not None and rows > 0 and cols > 0:
        session.resize(rows, cols)
    return web.Response(status=200)
