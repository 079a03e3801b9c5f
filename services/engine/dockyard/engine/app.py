"""Composition root of the Engine API: the aiohttp application over one client of the gateway.

Every handler module has a ``routes`` table; each route is served at its path and at the
version-prefixed one docker's clients use (``/v1.44/containers/json``), from 1.24 on.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from dockyard.client import AsyncClient
from dockyard.core.errors import DockyardError
from dockyard.engine import (
    archive,
    containers,
    convert,
    events,
    exec,
    images,
    manage,
    networks,
    observe,
    swarm,
    system,
    volumes,
)
from dockyard.engine import build as builds
from dockyard.engine.replies import error_reply
from dockyard.engine.state import ATTACHES, CLIENT, EXECS, INSTANCE, SCRATCH, Attaches, Execs

log = structlog.get_logger("dockyard.engine")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MODULES = (
    system,
    containers,
    images,
    builds,
    networks,
    volumes,
    events,
    exec,
    archive,
    observe,
    manage,
    swarm,
)


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure in docker's shape, ``{"message": ...}``, with docker's status code; a client's
    mistake is never a 500."""
    version = request.match_info.get("version")
    if version is not None and not convert.supported_version(version):
        return error_reply(400, f"client version {version} is not supported (1.24 to {convert.API_VERSION})")
    try:
        return await handler(request)
    except DockyardError as exc:
        return error_reply(convert.status_for(exc), exc.message)
    except json.JSONDecodeError as exc:
        return error_reply(400, f"malformed JSON in the request body: {exc}")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("engine handler failed", path=request.path)
        return error_reply(500, "internal error in dockyard-engine (see its log)")


async def _not_found(request: web.Request) -> web.StreamResponse:
    return error_reply(404, f"page not found: {request.method} {request.path}")


def build(client: AsyncClient, instance: str = "", scratch: Path | None = None) -> web.Application:
    """The app; ``scratch`` is a private directory for build contexts (default: the temp dir)."""
    app = web.Application(middlewares=[docker_errors])  # JSON bodies to 1 MiB; archives stream
    app[CLIENT] = client
    app[INSTANCE] = instance
    app[SCRATCH] = scratch or Path(tempfile.gettempdir())
    app[ATTACHES] = Attaches()
    app[EXECS] = Execs()

    async def cancel_attaches(app: web.Application) -> None:
        app[ATTACHES].cancel_all()
        app[EXECS].cancel_all()

    app.on_shutdown.append(cancel_attaches)
    for module in MODULES:
        for route in module.routes:
            assert isinstance(route, web.RouteDef)
            for prefix in ("", "/v{version:1\\.[0-9]+}"):
                app.router.add_route(route.method, prefix + route.path, route.handler, **route.kwargs)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
