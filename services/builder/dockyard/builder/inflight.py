"""Builds in flight, on disk, so a builder killed mid-build owes nothing when it starts again.

    <state>/inflight/<build-id>.json   {"tags": [...]}: written at build.started, removed at
                                       build.finished or build.failed

On start, before serving (:meth:`InFlight.settle`): each record left is a build a dead builder
never ended, so its ``dockyard.build.failed`` is emitted then. And in the background
(:func:`sweep_steps`, retried until the runtime answers): every step container (label
``dockyard.build=step``) whose ``dockyard.build.owner`` is not this builder process is removed,
as the killed builder would have done; this process's own builds are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from dockyard.core.errors import DockyardError
from dockyard.core.events import Publisher, Subject, new_event

log = structlog.get_logger("dockyard.builder")

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

    def settle(self) -> int:
        """Emit the build.failed a dead builder owed for each record it left; call before serving."""
        count = 0
        for path in sorted(self.root.glob("*.json")):
            tags: list[str] = []
            with contextlib.suppress(OSError, ValueError, AttributeError):
                tags = list(json.loads(path.read_text()).get("tags") or [])
            build_id = path.stem
            failed = new_event(Subject.BUILD_FAILED, self.source, build_id, {"tags": tags, "error": KILLED})
            self.publisher.publish(failed)
            log.warning("a build the previous builder never ended is reported failed", build=build_id)
            path.unlink(missing_ok=True)
            count += 1
        for stray in self.root.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
        return count


async def sweep_steps(
    step_containers: Callable[[], Awaitable[list[str]]],
    remove: Callable[[str], Awaitable[None]],
    retry_s: float = 2.0,
) -> None:
    """Remove the step containers earlier builders left (``step_containers`` names only those),
    trying again while the runtime does not answer (it may be starting with us)."""
    while True:
        try:
            leftovers = await step_containers()
            break
        except DockyardError as exc:
            log.debug("runtime not reachable yet for the step-container sweep", error=str(exc))
            await asyncio.sleep(retry_s)
    for container in leftovers:
        log.info("removing a step container left by a previous builder", container=container[:12])
        with contextlib.suppress(DockyardError):
            await remove(container)
