"""Dockyard's Python client: the typed library the CLI is built on.

::

    from dockyard.client import Client, RunOptions

    with Client() as client:                       # your platform's socket (or host="tcp://…", tls=…)
        result = client.containers.run(RunOptions("busybox", ["echo", "hi"], auto_remove=True))
        print(result.exit_code, result.stdout)

``AsyncClient`` has the same objects for asyncio. Errors are the platform's typed errors
(:mod:`dockyard.core.errors`) with a ``reason`` to act on; ``exit_code(err)`` is docker run's
125/126/127 for one.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees; at run time, _HOMES below
    from dockyard.client.calls import Stream, exit_code
    from dockyard.client.client import AsyncClient, AsyncStream, Client
    from dockyard.client.connection import client_tls
    from dockyard.client.grammar import Mount, Port, Volume, parse_mount, parse_publish, parse_volume
    from dockyard.client.types import (
        AttachOutput,
        BuildOptions,
        BuildProgress,
        ContainerInfo,
        DiskUsage,
        Event,
        HealthCheck,
        HistoryEntry,
        ImageInfo,
        ImageRemoval,
        ImageUsage,
        Limits,
        LogLine,
        NetworkInfo,
        NetworkMember,
        Pruned,
        PullProgress,
        PushedImage,
        RunOptions,
        RunResult,
        VolumeInfo,
        VolumeUsage,
    )

# Where each public name lives. Imported on first use, so that the CLI can load the grammar or
# the connection without gRPC (its --help stays fast).
_HOMES = {
    "Stream": "calls",
    "exit_code": "calls",
    "AsyncClient": "client",
    "AsyncStream": "client",
    "Client": "client",
    "client_tls": "connection",
    **dict.fromkeys(("Mount", "Port", "Volume", "parse_mount", "parse_publish", "parse_volume"), "grammar"),
    **dict.fromkeys(
        (
            "AttachOutput",
            "BuildOptions",
            "BuildProgress",
            "ContainerInfo",
            "DiskUsage",
            "Event",
            "HealthCheck",
            "HistoryEntry",
            "ImageInfo",
            "ImageRemoval",
            "ImageUsage",
            "Limits",
            "LogLine",
            "NetworkInfo",
            "NetworkMember",
            "Pruned",
            "PullProgress",
            "PushedImage",
            "RunOptions",
            "RunResult",
            "VolumeInfo",
            "VolumeUsage",
        ),
        "types",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dockyard.client' has no attribute {name!r}")
    return getattr(import_module(f"dockyard.client.{home}"), name)


__all__ = [
    "AsyncClient",
    "AsyncStream",
    "AttachOutput",
    "BuildOptions",
    "BuildProgress",
    "Client",
    "ContainerInfo",
    "DiskUsage",
    "Event",
    "HealthCheck",
    "HistoryEntry",
    "ImageInfo",
    "ImageRemoval",
    "ImageUsage",
    "Limits",
    "LogLine",
    "Mount",
    "NetworkInfo",
    "NetworkMember",
    "Port",
    "Pruned",
    "PullProgress",
    "PushedImage",
    "RunOptions",
    "RunResult",
    "Stream",
    "Volume",
    "VolumeInfo",
    "VolumeUsage",
    "client_tls",
    "exit_code",
    "parse_mount",
    "parse_publish",
    "parse_volume",
]

# The options of the calls that reach inside a container (exec, update).
if TYPE_CHECKING:
    from dockyard.client.types import ExecOptions
_HOMES["ExecOptions"] = "types"
__all__ += ["ExecOptions"]
