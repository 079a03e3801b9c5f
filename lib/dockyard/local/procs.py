"""Which processes a ``dockyard up`` started, so the next one can stop what a dead one left.

A pid alone names nothing once its process is gone (the kernel reuses it), so each child is
recorded as ``(pid, start time)``: the start time is field 22 of ``/proc/<pid>/stat``, clock ticks
since boot, fixed for the life of the process and kept across ``exec`` (the runtime re-executes
itself through ``nsenter`` under the same pid). A record whose pid now has another start time is
someone else's process and is left alone.

The record, rewritten (atomically) whenever a child starts::

    <state-dir>/up.pids    {"supervisor": {"pid": …, "start": …}, "instance": "…",
                            "children": {"nats": {"pid": …, "start": …}, "registry": …}}

Only the supervisor's own children are recorded. What the runtime starts on purpose to outlive
it — its pause process (``<state>/runtime/pause.pid``), conmon, runc, slirp4netns — is not, and is
never stopped from here: containers outliving the platform is a feature, as with podman.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("dockyard.up")


@dataclass(frozen=True, slots=True)
class ProcessId:
    """A process, named so that a reused pid cannot be mistaken for it."""

    pid: int
    start: int  # /proc/<pid>/stat field 22

    def alive(self) -> bool:
        """Whether this very process still runs, or still holds what it had (its files, its ports).

        A zombie whose threads have all exited does not. A multi-threaded process (nats-server)
        killed shows its main thread as a zombie while the other threads still tear down and
        its sockets are still open: that counts as alive.
        """
        return _stat(self.pid) == ("alive", self.start)


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid …": comm may hold spaces and parentheses; the rest follows the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    state = "alive"
    if fields[0] in ("Z", "X"):
        try:
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            threads = 0
        state = "alive" if threads > 1 else "zombie"
    return state, int(fields[19])


def identify(pid: int) -> ProcessId | None:
    """``pid`` with its start time, or None when no such (live) process exists."""
    found = _stat(pid)
    if found is None or found[0] != "alive":
        return None
    return ProcessId(pid, found[1])


@dataclass(frozen=True, slots=True)
class PidRecord:
    """``<state>/up.pids``: the supervisor, its instance id and its children."""

    path: Path

    def write(self, instance: str, children: dict[str, ProcessId]) -> None:
        me = identify(os.getpid())
        doc = {
            "supervisor": {"pid": os.getpid(), "start": me.start if me else 0},
            "instance": instance,
            "children": {name: {"pid": p.pid, "start": p.start} for name, p in children.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(self.path)

    def read(self) -> dict[str, ProcessId]:
        """The recorded children (empty when there is no readable record)."""
        try:
            doc = json.loads(self.path.read_text())
            return {
                name: ProcessId(int(entry["pid"]), int(entry["start"]))
                for name, entry in doc.get("children", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def stop_leftovers(record: PidRecord, grace_s: float = 10.0) -> dict[str, int]:
    """Stop every recorded child that still runs; return ``{name: pid}`` of those stopped.

    Call only while holding the state directory's lock: then no live supervisor owns them.
    SIGTERM (with SIGCONT, so a stopped process handles it), then SIGKILL after ``grace_s``.
    Costs one /proc read per record, and at most ``grace_s`` of waiting.
    """
    leftovers = {name: p for name, p in record.read().items() if p.alive()}
    for process in leftovers.values():
        for sig in (signal.SIGTERM, signal.SIGCONT):
            _signal(process, sig)
    deadline = time.monotonic() + grace_s
    while any(p.alive() for p in leftovers.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, process in leftovers.items():
        if process.alive():
            log.warning("leftover did not stop in time; killing", service=name, pid=process.pid)
            _signal(process, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(p.alive() for p in leftovers.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    record.clear()
    return {name: p.pid for name, p in leftovers.items()}


def _signal(process: ProcessId, sig: int) -> None:
    if process.alive():  # checked right before, so a pid reused meanwhile is not hit
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, sig)
