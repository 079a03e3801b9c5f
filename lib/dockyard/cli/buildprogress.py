"""How ``dockyard build`` shows progress: BuildKit's plain ``#N`` lines, or a live tty view.

``plain`` (CI logs, pipes): one line per state change, step output prefixed ``#N``.
``tty``: finished steps scroll up as ``=> [2/5] RUN make  1.2s`` (``CACHED`` for a hit); below
them a live area, redrawn ten times a second, shows the elapsed time and every running step
with its timer and the last lines of its output. Both read the same BuildEvents.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

_LOG_LINES = 6  # output lines shown under a running step


def display(mode: str, out: TextIO) -> PlainView | TtyView:
    """The view for ``--progress`` (auto: tty when ``out`` is a terminal)."""
    if mode == "tty" or (mode == "auto" and out.isatty()):
        return TtyView(out)
    return PlainView(out)


class PlainView:
    """BuildKit's plain progress: ``#N [2/5] RUN …``, ``#N <output>``, ``#N DONE 1.2s``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.partial: dict[int, bytes] = {}

    def event(self, e: Any) -> None:
        w, n = self.out.write, e.index
        if e.status == "warning":
            w(f"WARNING: {e.error}\n")
        elif e.status == "started":
            w(f"#{n} {e.step}\n")
        elif e.status == "cached":
            w(f"#{n} CACHED\n")
        elif e.status == "done":
            w(f"#{n} DONE {e.seconds:.1f}s\n")
        elif e.status == "error":
            w(f"#{n} ERROR: {e.error}\n")
        elif e.status == "log":
            data = self.partial.pop(n, b"") + e.log
            *lines, rest = data.split(b"\n")
            if rest:
                self.partial[n] = rest
            w("".join(f"#{n} {line.decode(errors='replace')}\n" for line in lines))
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


@dataclass
class _Running:
    title: str
    started: float
    lines: list[str] = field(default_factory=list)
    partial: str = ""


class TtyView:
    """The live view (see the module docstring). Thread-safe: events and the ticker share a lock."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.running: dict[int, _Running] = {}
        self.finished = 0
        self.total = 0
        self.drawn = 0  # lines of the live area on screen now
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="build-progress", daemon=True)
        self.ticker.start()

    def event(self, e: Any) -> None:
        with self.lock:
            self.total = max(self.total, e.total)
            above: list[str] = []
            if e.status == "warning":
                above.append(f"WARNING: {e.error}")
            elif e.status == "started":
                self.running[e.index] = _Running(e.step, time.monotonic())
            elif e.status in ("done", "cached", "error"):
                self.running.pop(e.index, None)
                self.finished += 1
                if e.status == "cached":
                    above.append(f" => CACHED {e.step}")
                elif e.status == "done":
                    above.append(f" => {e.step}  {e.seconds:.1f}s")
                else:
                    above.append(f" => ERROR {e.step}: {e.error}")
            elif e.status == "log" and e.index in self.running:
                step = self.running[e.index]
                *lines, step.partial = (step.partial + e.log.decode(errors="replace")).split("\n")
                step.lines = (step.lines + lines)[-_LOG_LINES:]
            self._draw(above)

    def close(self) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        self.ticker.join()
        with self.lock:
            self.running.clear()
            self._draw([])

    def _tick(self) -> None:
        while not self.stop.wait(0.1):
            with self.lock:
                self._draw([])

    def _draw(self, above: list[str]) -> None:
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        now = time.monotonic()
        header = f"[+] Building {now - self.t0:.1f}s ({self.finished}/{self.total or '?'})"
        live = [header + (" FINISHED" if self.stop.is_set() else "")]
        for step in self.running.values():
            live.append(f" => {step.title}  {now - step.started:.1f}s")
            live.extend(f"    {line}" for line in step.lines)
        text = "".join(f"{line[:width]}\n" for line in [*above, *live])
        clear = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
        self.out.write(clear + text)
        self.out.flush()
        self.drawn = 0 if self.stop.is_set() else len(live)  # once closed, the last frame stays
