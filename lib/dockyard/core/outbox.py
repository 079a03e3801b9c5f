"""A durable, crash-safe outbox of events waiting to reach the bus.

A service appends an event here (cheap, local, never fails because the bus is down); a
drainer (``dockyard.adapters.nats.bus.OutboxDrainer``) publishes them in order and removes
each only after JetStream acknowledged it. The event id doubles as the JetStream message id,
so a re-send after a crash between "acked" and "removed" is dropped by the stream's
de-duplication window and, beyond it, by consumers that de-duplicate by id.

On disk::

    <root>/
      tmp/                               being written; ignored and swept at open
      pending/
        <time_ns:020>-<seq:08>-<id>.json one CloudEvents JSON document per file, fsynced,
                                         renamed in whole: a reader never sees half an event
      dead/                              events the bus can never take (bigger than NATS's
        <same name>.json                 max_payload, or refused for good), set aside by the
        <same name>.json.reason          drainer with why, so the queue behind them moves on
      corrupt/                           files of pending/ that did not parse

Names sort in emission order, so draining in name order keeps the order a service emitted.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.core.events import Event
from dockyard.core.fsutil import FULL_ERRNOS, fsync_dir


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event read back from the outbox, with the file that holds it."""

    path: Path
    event: Event


class Outbox:
    """The on-disk queue. Thread-safe; one writer process per root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pending = root / "pending"
        self._tmp = root / "tmp"
        self._pending.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():  # a crash mid-append; the event was never acknowledged
            leftover.unlink(missing_ok=True)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def on_append(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the appending thread) after each append."""
        self._listeners.append(listener)

    def append(self, event: Event) -> Path:
        """Persist ``event``; when this returns the event survives a crash. Costs one fsync."""
        with self._lock:
            name = f"{time.time_ns():020d}-{next(self._seq) % 10**8:08d}-{event.id}.json"
        tmp = self._tmp / name
        try:
            with open(tmp, "wb") as fh:
                fh.write(event.to_json())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: no half an event left behind
            raise
        final = self._pending / name
        os.rename(tmp, final)
        fsync_dir(self._pending)
        for listener in self._listeners:
            listener()
        return final

    def pending(self, limit: int = 1000) -> list[PendingEvent]:
        """The oldest ``limit`` events not yet acknowledged, oldest first.

        A file that does not parse (disk corruption, a foreign file) is moved aside to
        ``<root>/corrupt/`` rather than blocking the queue forever.
        """
        out: list[PendingEvent] = []
        for path in sorted(self._pending.iterdir())[:limit]:
            try:
                out.append(PendingEvent(path, Event.from_json(path.read_bytes())))
            except FileNotFoundError:
                continue
            except Exception:
                corrupt = self.root / "corrupt"
                corrupt.mkdir(exist_ok=True)
                os.replace(path, corrupt / path.name)
        return out

    def ack(self, item: PendingEvent) -> None:
        """Forget an event the bus has durably accepted."""
        item.path.unlink(missing_ok=True)

    def dead_letter(self, item: PendingEvent, reason: str) -> Path:
        """Set aside an event the bus will never accept, with ``reason`` beside it: retrying it at
        the head of the queue would hold every later event back forever. Kept, not deleted, so
        an operator can read (or replay) it; counted by :meth:`dead_count`."""
        dead = self.root / "dead"
        dead.mkdir(exist_ok=True)
        (dead / f"{item.path.name}.reason").write_text(reason + "\n")
        target = dead / item.path.name
        os.replace(item.path, target)
        fsync_dir(dead)
        fsync_dir(self._pending)
        return target

    def dead_count(self) -> int:
        """How many events were set aside as never publishable."""
        try:
            return sum(1 for p in (self.root / "dead").iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return 0

    def __len__(self) -> int:
        return sum(1 for _ in self._pending.iterdir())


class OutboxPublisher:
    """The ``Publisher`` every service uses: append to the outbox, return at once.

    When the disk is full (ENOSPC/EDQUOT) an event is held in memory, in order, up to
    ``max_held`` of them, and written before the next one once there is space again: a full disk
    must not make the change the event reports (a kill, a remove) fail. Held events are lost only
    if the service ends before space comes back.
    """

    def __init__(self, outbox: Outbox, max_held: int = 10_000) -> None:
        self.outbox = outbox
        self.max_held = max_held
        self._held: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """How many events wait in memory for disk space."""
        return len(self._held)

    def publish(self, event: Event) -> None:
        with self._lock:
            self._held.append(event)
            if len(self._held) > self.max_held:
                self._held.popleft()  # bounded: the oldest goes first
            while self._held:
                try:
                    self.outbox.append(self._held[0])
                except OSError as exc:
                    if exc.errno in FULL_ERRNOS:
                        return  # kept; the next publish tries again
                    self._held.popleft()
                    raise
                self._held.popleft()
