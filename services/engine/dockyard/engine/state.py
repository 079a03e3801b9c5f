"""What the Engine API's handlers share: the client, this platform's instance id, live attaches,
the private directory for request bodies it must spool (build contexts)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard.client import AsyncClient

CLIENT = web.AppKey("client", AsyncClient)
INSTANCE = web.AppKey("instance", str)
SCRATCH = web.AppKey("scratch", Path)


class Attaches:
    """Attaches waiting for their container's start, and those that run.

    docker's ``run`` attaches to a created container, then calls ``/start``. The platform's attach
    starts the container itself once its streams are connected (so no output is lost), so
    ``/start`` of a container with an attach waiting hands the start to that attach instead.
    ``/resize`` reaches a running attach; shutting down cancels them all.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Queue[asyncio.Future[None]]] = {}
        self.live: dict[str, Any] = {}  # container id → its client.containers.Attachment

    def wait_for_start(self, container_id: str) -> asyncio.Queue[asyncio.Future[None]]:
        return self._waiting.setdefault(container_id, asyncio.Queue(maxsize=1))

    def waiting(self, container_id: str) -> asyncio.Queue[asyncio.Future[None]] | None:
        """The queue of an attach waiting on ``container_id``, if one is."""
        return self._waiting.get(container_id)

    def done(self, container_id: str) -> None:
        self._waiting.pop(container_id, None)
        self.live.pop(container_id, None)

    def cancel_all(self) -> None:
        for session in list(self.live.values()):
            session.cancel()


ATTACHES = web.AppKey("attaches", Attaches)
