"""Builds in flight, on disk, so a builder killed mid-build owes nothing when it starts again.

    <state>/inflight/<build-id>.json   {"tags": [...]}: written at build.started, removed at
                                       build.finished or build.failed

On start (:meth:`InFlight.recover`), before any build: each record left is a build a dead builder
never ended, so its ``dockyard.build.failed`` is emitted then; and every step container
(label ``dockyard.build=step``) still on the runtime is removed, as the killed builder would
have done. One builder per runtime is assumed, as ``dockyard up`` runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from dockyard.core.events import Publisher, Subject, new_event

log = structlog.get_logger("dockyard.builder")

STEP_LABEL = ("dockyard.build", "step")
KILLED = "the builder stopped while this build ran (it was killed or crashed)"


class InFlight:
    def __init__(self, root: Path, publisher: Publisher, source: str) -> None:
        self.root = root
        self.publisher = publisher
        self.source = source
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, build_id: str) -> Path:
        return self.root / f"{build_id}.json"

    def begin(self, build_id: str, tags: list[str]) -> None:
        tmp = self.root / f".{build_id}.tmp"
        tmp.write_text(json.dumps({"tags": tags}))
        os.replace(tmp, self._path(build_id))

    def end(self, build_id: str) -> None:
        self._path(build_id).unlink(missing_ok=True)

    async def recover(
        self, step_containers: Callable[[], Awaitable[list[str]]], remove: Callable[[str], Awaitable[None]]
    ) -> None:
        """Emit the build.failed a dead builder owed; remove the step containers it left."""
        for path in sorted(self.root.glob("*.json")):
            tags: list[str] = []
            with contextlib.suppress(OSError, ValueError, AttributeError):
                tags = list(json.loads(path.read_text()).get("tags") or [])
            build_id = path.stem
            self.publisher.publish(
                new_event(Subject.BUILD_FAILED, self.source, build_id, {"tags": tags, "error": KILLED})
            )
            log.warning("a build the previous builder never ended is reported failed", build=build_id)
            path.unlink(missing_ok=True)
        for stray in self.root.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
        for container in await step_containers():
            log.info("removing a step container left by a previous builder", container=container[:12])
            with contextlib.suppress(Exception):
                await remove(container)
