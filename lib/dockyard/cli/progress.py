"""Pull/push progress for people: one live line per layer on a terminal, plain lines otherwise.

On a terminal each layer keeps its line, redrawn in place with ANSI cursor moves (up N, clear
line, rewrite, down N). Elsewhere (a pipe, a log file) a line is printed only when a layer's
status changes, never per byte.
"""

from __future__ import annotations

import sys
from typing import TextIO

from dockyard.cli.human import human_size

BAR = 50


def short(ident: str) -> str:
    """A layer's digest as docker shows it (12 hex); any other id as is."""
    if ident.startswith("sha256:"):
        return ident[7:19]
    return ident


def line(ident: str, status: str, current: int, total: int, bar: bool = True) -> str:
    """ "a1b2c3d4e5f6: Downloading [=====>    ]  1.2MB/3.4MB" (no bar or sizes when unknown)."""
    head = f"{short(ident)}: {status}" if ident else status
    if total > 0 and 0 < current < total:
        amount = f"{human_size(current)}/{human_size(total)}"
        if not bar:
            return f"{head} {amount}"
        filled = int(BAR * current / total)
        arrow = "=" * filled + (">" if filled < BAR else "") + " " * max(0, BAR - filled - 1)
        return f"{head} [{arrow}]  {amount}"
    return head


class ProgressView:
    """Feed it Progress messages; ``tty`` decides live redraws or plain lines."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self._out = stream or sys.stdout
        self._tty = self._out.isatty() if tty is None else tty
        self._order: list[str] = []
        self._last: dict[str, str] = {}

    def update(self, ident: str, status: str, current: int = 0, total: int = 0) -> None:
        key = ident or status
        if not self._tty:
            if self._last.get(key) != status:
                self._last[key] = status
                self._out.write(line(ident, status, 0, 0) + "\n")
                self._out.flush()
            return
        text = line(ident, status, current, total)
        if key not in self._last or not ident:
            if ident:
                self._order.append(key)
            self._last[key] = text
            self._out.write(text + "\n")
        else:
            if self._last[key] == text:
                return
            self._last[key] = text
            up = len(self._order) - self._order.index(key)
            self._out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
        self._out.flush()
