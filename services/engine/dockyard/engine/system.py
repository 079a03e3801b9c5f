"""``/_ping``, ``/version`` and ``/info``: what docker's clients ask first, to negotiate."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

from aiohttp import web

from dockyard.engine import convert, resource_shapes
from dockyard.engine.replies import json_reply
from dockyard.engine.state import CLIENT, INSTANCE

routes = web.RouteTableDef()

ENGINE_VERSION = "28.2.0-dockyard"
CGROUP_VERSION = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _ping_headers(request: web.Request) -> dict[str, str]:
    # Dockyard-Instance lets `dockyard up` tell its own engine from another platform's on the path
    return {
        "API-Version": convert.API_VERSION,
        "OSType": "linux",
        "Docker-Experimental": "false",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Dockyard-Instance": request.app[INSTANCE],
    }


@routes.get("/_ping")
async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK", headers=_ping_headers(request))


@routes.head("/_ping")
async def ping_head(request: web.Request) -> web.StreamResponse:
    return web.Response(headers=_ping_headers(request))


@routes.get("/version")
async def version(request: web.Request) -> web.StreamResponse:
    return json_reply(
        {
            "Platform": {"Name": "Dockyard Engine"},
            "Version": ENGINE_VERSION,
            "ApiVersion": convert.API_VERSION,
            "MinAPIVersion": convert.MIN_API_VERSION,
            "Os": "linux",
            "Arch": convert.architecture(),
            "KernelVersion": platform.release(),
            # docker's Go build facts; the engine is Python, and says so where docker names Go
            "GoVersion": f"python{platform.python_version()}",
            "GitCommit": "",
            "BuildTime": "",
            "Components": [
                {"Name": "Engine", "Version": ENGINE_VERSION, "Details": {"ApiVersion": convert.API_VERSION}}
            ],
        }
    )


@routes.get("/info")
async def info(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    found = await client.containers.list(all=True)
    images = await client.images.list()
    states = [c.state for c in found]
    return json_reply(
        {
            "ID": request.app[INSTANCE],
            "Name": platform.node(),
            "Containers": len(found),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(found) - states.count("running") - states.count("paused"),
            "Images": len(images),
            "Driver": "overlay",
            "ServerVersion": ENGINE_VERSION,
            "OperatingSystem": "Dockyard (rootless)",
            "OSType": "linux",
            "Architecture": convert.architecture(),
            "KernelVersion": platform.release(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"],
            "CgroupVersion": CGROUP_VERSION,
            "Runtimes": {"runc": {"path": "runc"}},
            "DefaultRuntime": "runc",
            "Swarm": {"LocalNodeState": "inactive"},
            "Debug": False,
            "ExperimentalBuild": False,
            "Labels": [],
            "Warnings": [],
        }
    )


@routes.get("/system/df")
async def disk_usage(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    usage = await client.images.disk_usage()
    found = await client.containers.list(all=True)
    volumes = await client.volumes.list()
    return json_reply(resource_shapes.disk_usage(usage, found, volumes, datetime.now(UTC)))
