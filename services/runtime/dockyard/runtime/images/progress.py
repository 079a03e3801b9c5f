"""Progress of a pull or push, as docker's JSON progress messages shape it.

Reported per layer and throttled: at most one "Downloading"/"Pushing" event per layer every
``PROGRESS_INTERVAL`` seconds, plus one per state change. The callback runs on the event loop
and must not block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

PROGRESS_INTERVAL = 0.1  # seconds between two byte-count events of one layer


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event of a pull or push, shaped like docker's JSON progress messages.

    ``id`` is a layer's short digest (12 hex), or "" for an event about the whole image;
    ``current``/``total`` are bytes (0 when not a byte count).
    """

    id: str
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


def short_id(digest: str) -> str:
    """The 12-hex short form docker shows for a layer."""
    return digest.partition(":")[2][:12]


class LayerProgress:
    """Byte counts of one layer, reported at most every PROGRESS_INTERVAL seconds."""

    def __init__(self, emit: ProgressFn | None, digest: str, total: int, status: str) -> None:
        self.emit = emit
        self.id = short_id(digest)
        self.total = total
        self.status = status
        self.current = 0
        self._last = 0.0

    def event(self, status: str, current: int = 0, total: int = 0) -> None:
        if self.emit is not None:
            self.emit(Progress(self.id, status, current, total))

    def restart(self) -> None:
        self.current = 0

    def add(self, n: int) -> None:
        self.current += n
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL or self.current >= self.total:
            self._last = now
            self.event(self.status, self.current, self.total)
