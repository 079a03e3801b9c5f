"""Swarm mode's endpoints, answered as a docker engine that is in no swarm answers them.

Dockyard has no swarm mode. docker's clients still ask: docker-py's ``leave_swarm(force=True)``
(run by test suites' tear-downs) takes docker's 503 "not part of a swarm" as done, and the CLI
prints docker's own hint for ``docker service ls``. A 404 would read as an engine too old for them.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.engine.replies import error_reply

routes = web.RouteTableDef()

NOT_IN_A_SWARM = "This node is not part of a swarm"
NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
UNSUPPORTED = "Dockyard has no swarm mode: this node cannot init or join a swarm"


@routes.post("/swarm/leave")
async def leave(request: web.Request) -> web.StreamResponse:
    return error_reply(503, NOT_IN_A_SWARM)


@routes.post("/swarm/init")
@routes.post("/swarm/join")
async def init_or_join(request: web.Request) -> web.StreamResponse:
    return error_reply(503, UNSUPPORTED)


@routes.get("/swarm")
@routes.get("/swarm/unlockkey")
@routes.post("/swarm/update")
@routes.post("/swarm/unlock")
@routes.route("*", "/nodes{tail:(/.*)?}")
@routes.route("*", "/services{tail:(/.*)?}")
@routes.route("*", "/tasks{tail:(/.*)?}")
@routes.route("*", "/secrets{tail:(/.*)?}")
@routes.route("*", "/configs{tail:(/.*)?}")
async def manager_only(request: web.Request) -> web.StreamResponse:
    return error_reply(503, NOT_A_MANAGER)
