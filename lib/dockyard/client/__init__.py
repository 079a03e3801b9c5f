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

from dockyard.client.calls import Stream, exit_code
from dockyard.client.client import AsyncClient, AsyncStream, Client
from dockyard.client.connection import client_tls
from dockyard.client.grammar import Mount, Port, Volume, parse_mount, parse_publish, parse_volume
from dockyard.client.types import (
    BuildOptions,
    BuildProgress,
    ContainerInfo,
    Event,
    ImageInfo,
    LogLine,
    NetworkInfo,
    PullProgress,
    RunOptions,
    RunResult,
    VolumeInfo,
)

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "BuildOptions",
    "BuildProgress",
    "Client",
    "ContainerInfo",
    "Event",
    "ImageInfo",
    "LogLine",
    "Mount",
    "NetworkInfo",
    "Port",
    "PullProgress",
    "RunOptions",
    "RunResult",
    "Stream",
    "Volume",
    "VolumeInfo",
    "client_tls",
    "exit_code",
    "parse_mount",
    "parse_publish",
    "parse_volume",
]
