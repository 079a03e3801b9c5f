"""``/containers/{id}/exec`` and ``/exec/…``: docker's exec, over ``client.containers.open_exec``.

docker's CLI makes the instance, starts it as a hijacked stream, and once the stream ends reads
the exit code from ``/exec/{id}/json``: so the code is recorded before the stream is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from aiohttp import web

from dockyard.client import exit_code
from dockyard.core.errors import DockyardError, FailedPrecondition, InvalidArgument
from dockyard.engine import convert, hijack, inside_shapes
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT, EXECS, ExecRecord

routes = web.RouteTableDef()

_KILLED = 137  # the client left before the end: the platform kills the process with the stream
_DETACHED_ANSWER_S = 0.5  # how long a detached start waits to report a command that cannot run


async def _body(request: web.Request) -> Any:
    return await request.json() if request.can_read_body else {}


@routes.post("/containers/{id}/exec")
async def create(request: web.Request) -> web.StreamResponse:
    info = await request.app[CLIENT].containers.get(request.match_info["id"])
    if info.state == "paused":
        raise FailedPrecondition(f"container {info.id} is paused, unpause the container before exec")
    if info.state != "running":
        raise FailedPrecondition(f"container {info.id} is not running")
    record = request.app[EXECS].add(inside_shapes.exec_request(await _body(request), info.id))
    return json_reply({"Id": record.id}, status=201)


@routes.get("/exec/{id}/json")
async def inspect(request: web.Request) -> web.StreamResponse:
    record = request.app[EXECS].get(request.match_info["id"])
    shape = inside_shapes.exec_inspect(
        record.id, record.request, running=record.state == "running", exit_code=record.exit_code
    )
    return json_reply(shape)


@routes.post("/exec/{id}/resize")
async def resize(request: web.Request) -> web.StreamResponse:
    record = request.app[EXECS].get(request.match_info["id"])
    rows, cols = (request.query.get(key, "") for key in ("h", "w"))
    if not (rows.isdigit() and cols.isdigit()):
        raise InvalidArgument(f"resize needs h and w as numbers, not {rows!r} and {cols!r}")
    if int(rows) > 0 and int(cols) > 0:
        record.size = (int(rows), int(cols))
        if record.session is not None:
            record.session.resize(*record.size)
    return web.Response(status=200)


@routes.post("/exec/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    record = request.app[EXECS].get(request.match_info["id"])
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    if record.state != "created":
        raise FailedPrecondition(f"Exec command {record.id} has already run or is running")
    detach = bool(body.get("Detach"))
    rows, cols = inside_shapes.console_size(body)
    if not rows:  # else a resize that came first, else the size given at create
        rows, cols = record.size
    options = replace(
        record.request.options,
        rows=rows or record.request.options.rows,
        cols=cols or record.request.options.cols,
        interactive=record.request.stdin and not detach,
    )
    record.state = "running"
    record.session = request.app[CLIENT].sync.containers.open_exec(options)
    if detach:
        return await _start_detached(record)
    # framing follows the start's Tty, not the create's, as dockerd's router does: a process on a
    # terminal started with Tty false is read as frames (all of them stdout, a terminal merges)
    raw = bool(body.get("Tty"))
    response, pipe = await hijack.upgrade(request, hijack.RAW if raw else hijack.MULTIPLEXED)
    try:
        await _pump(record, pipe, tty=raw)
    finally:
        pipe.close()
    return response


async def _start_detached(record: ExecRecord) -> web.StreamResponse:
    """Started with nothing attached (``docker exec -d``); a command that cannot run is still
    reported, as dockerd does, when the platform says so at once."""
    session = record.session
    session.close_stdin()
    failure: list[DockyardError] = []

    async def drain() -> None:
        outputs = iter(session)
        done = object()
        try:
            while (item := await asyncio.to_thread(next, outputs, done)) is not done:
                out: Any = item
                if out.kind == "exit":
                    record.finish(out.exit_code)
        except DockyardError as exc:
            failure.append(exc)
            record.finish(exit_code(exc))
        finally:
            session.cancel()
            record.finish(_KILLED)

    record.task = asyncio.create_task(drain())
    await asyncio.wait({record.task}, timeout=_DETACHED_ANSWER_S)
    if failure:
        raise failure[0]
    return web.Response(status=200)


async def _pump(record: ExecRecord, pipe: hijack.Pipe, *, tty: bool) -> None:
    """The process's output to the client and the client's bytes to its stdin, until it exits or
    the client leaves; the exit code is recorded before this returns."""
    request = record.request
    wanted = {"stdout": request.stdout, "stderr": request.stderr}

    def on_other(out: Any) -> None:
        if out.kind == "exit":
            record.finish(out.exit_code)

    try:
        await hijack.relay(record.session, pipe, wanted, tty=tty, stdin=request.stdin, on_other=on_other)
    except DockyardError as exc:  # it could not run: dockerd writes why on the stream
        record.finish(exit_code(exc))
        message = exc.message.encode() + b"\r\n"
        with contextlib.suppress(ConnectionResetError):
            await pipe.write(message if tty else convert.frame("stdout", message))
    except ConnectionResetError:
        pass
    finally:
        record.finish(_KILLED)  # no exit message: the stream ended early
