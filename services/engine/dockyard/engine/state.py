"""What the Engine API's handlers share: the client, this platform's instance id, live attaches,
exec instances, and the private directory for request bodies it must spool (build contexts)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard.client import AsyncClient
from dockyard.core.errors import FailedPrecondition, NotFound
from dockyard.engine.inside_shapes import ExecRequest

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


@dataclass(eq=False)
class ExecRecord:
    """One ``docker exec`` instance: made by ``/containers/{id}/exec``, run once by ``/exec/{id}/start``."""

    id: str
    request: ExecRequest
    created: float = field(default_factory=time.monotonic)
    state: str = "created"  # created, running, exited
    exit_code: int | None = None
    finished: float | None = None
    size: tuple[int, int] = (0, 0)  # a resize that came before the start
    session: Any = None  # its client.containers.Attachment while it runs
    task: asyncio.Task[None] | None = None  # a detached one's output drain

    def finish(self, exit_code: int) -> None:
        if self.state != "exited":
            self.state, self.exit_code, self.finished = "exited", exit_code, time.monotonic()
            self.session = None


class Execs:
    """Exec instances by id, bounded: docker's clients inspect one just after it ends (the CLI
    reads its exit code there), so one that ended, or was never started, is kept for KEEP_S; past
    MOST instances the oldest that ended go first, and a new one is refused if every one runs."""

    KEEP_S = 300.0
    MOST = 512

    def __init__(self) -> None:
        self._by_id: dict[str, ExecRecord] = {}

    def add(self, request: ExecRequest) -> ExecRecord:
        self._forget(time.monotonic())
        if len(self._by_id) >= self.MOST:
            raise FailedPrecondition(f"too many exec instances ({self.MOST}) are running; try again later")
        record = ExecRecord(secrets.token_hex(32), request)
        self._by_id[record.id] = record
        return record

    def get(self, exec_id: str) -> ExecRecord:
        record = self._by_id.get(exec_id)
        if record is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return record

    def _forget(self, now: float) -> None:
        for record in list(self._by_id.values()):
            since = record.finished if record.state == "exited" else record.created
            if record.state != "running" and since is not None and now - since > self.KEEP_S:
                del self._by_id[record.id]
        ended = sorted((r for r in self._by_id.values() if r.state != "running"), key=lambda r: r.created)
        for record in ended[: max(0, len(self._by_id) - self.MOST + 1)]:
            del self._by_id[record.id]

    def cancel_all(self) -> None:
        for record in self._by_id.values():
            if record.session is not None:
                record.session.cancel()
            if record.task is not None:
                record.task.cancel()


EXECS = web.AppKey("execs", Execs)
