"""What the policies around a container — health checks and restarts — need of the manager that
runs it: look a live container up, save and announce its record, start it again. ``ContainerManager``
is the one implementation; the policies depend on this, never on the manager's module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dockyard.core.events import Subject
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.records import ContainerRecord, LiveContainer


class Lifecycle(Protocol):
    root: Path  # each container's directory is root / id
    monitor: Monitor
    live: dict[str, LiveContainer]  # by id, every container the manager knows

    def save(self, record: ContainerRecord, *, durable: bool = False) -> ContainerRecord:
        """Persist ``record`` and make it the live one."""
        ...

    def emit(self, subject: Subject, record: ContainerRecord, **data: Any) -> None:
        """Publish a container event about ``record``."""
        ...

    async def start_locked(
        self, live: LiveContainer, before_start: Callable[[], Any] | None
    ) -> ContainerRecord:
        """Start ``live`` (its lock held by the caller)."""
        ...
