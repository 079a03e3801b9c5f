"""A local terminal joined to a container's stdio over a bidirectional stream (run, start -a, exec).

The request side is a generator fed by a queue: the first message (AttachStart / ExecStart), then
stdin read by a daemon thread (when interactive), window resizes from SIGWINCH (with a TTY), and
nothing more until the call ends. The response side writes stdout/stderr bytes to this process's
fds as they arrive and keeps the exit code of the last message.

With a TTY and a terminal on stdin the local terminal goes raw (restored in ``finally``), so
Ctrl-C is a byte for the container. Without one, the first Ctrl-C is sent to the container as
SIGINT (``on_interrupt``) and a second one detaches, as docker's signal proxy does. On a raw
terminal the detach keys (docker's ``--detach-keys``, Ctrl-P Ctrl-Q by default) detach: their
bytes never reach the container, and a partial sequence is sent on once it stops matching.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

_END = object()
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """docker's ``--detach-keys``: ``ctrl-p,ctrl-q``, a letter, or ``ctrl-@``..``ctrl-_``; ""
    disables detaching. InvalidArgument for anything else."""
    if spec == "":
        return b""
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            code = ord(key[5].upper()) - 64  # ctrl-a is 1, ctrl-@ 0, ctrl-_ 31
            if not 0 <= code <= 31:
                break
            out.append(code)
        else:
            break
    else:
        return bytes(out)
    from dockyard.core.errors import InvalidArgument

    raise InvalidArgument(
        f"invalid detach keys {spec!r}: want e.g. ctrl-p,ctrl-q, a letter, or ctrl-@..ctrl-_"
    )


def terminal_size() -> tuple[int, int]:
    """(rows, cols) of the terminal on stdout (or stdin), (0, 0) when there is none."""
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return 0, 0


class Session:
    """One attached stream. ``message`` builds a request from (field, value) of the oneof."""

    def __init__(
        self,
        message: Callable[..., Any],
        first: Any,
        *,
        interactive: bool,
        tty: bool,
        on_interrupt: Callable[[], None] | None = None,
        detach_keys: bytes = b"\x10\x11",
    ) -> None:
        self._message = message
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=64)
        self._queue.put(first)
        self._interactive = interactive
        self._tty = tty
        self._on_interrupt = on_interrupt
        self._interrupts = 0
        self.detached = False
        self.exit_code: int | None = None
        self.output_seen = False
        self._detach_keys = detach_keys
        self._responses: Any = None

    def requests(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item

    def _pump_stdin(self, watch_keys: bool) -> None:
        fd = sys.stdin.fileno()
        keys, matched = self._detach_keys if watch_keys else b"", b""
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                if keys:
                    data, matched = _scan(matched + data, keys)
                if data:
                    self._queue.put(self._message(stdin=data))
                if keys and matched == keys:
                    self._detach()
                    return
        except OSError:
            pass
        self._queue.put(self._message(stdin_eof=True))

    def _detach(self) -> None:
        self.detached = True
        if self._responses is not None:
            self._responses.cancel()

    def _resize(self, *_: object) -> None:
        rows, cols = terminal_size()
        if rows and cols:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(self._message(resize={"rows": rows, "cols": cols}))

    def run(self, call: Callable[[Iterator[Any]], Iterator[Any]]) -> int | None:
        """Open the call with this session's requests; return the exit code, or None if the stream
        ended without one (detached). A gRPC error propagates to the caller."""
        raw = self._tty and self._interactive and os.isatty(0)
        saved: list[Any] | None = None
        old_winch = old_int = None
        responses = self._responses = call(self.requests())
        try:
            if raw:
                import termios
                import tty

                saved = termios.tcgetattr(0)
                tty.setraw(0, termios.TCSANOW)  # keep what was typed ahead (TCSAFLUSH drops it)
            if self._tty and hasattr(signal, "SIGWINCH"):
                old_winch = signal.signal(signal.SIGWINCH, self._resize)
            if not raw:
                old_int = signal.signal(signal.SIGINT, self._interrupt(responses))
            if self._interactive:
                pump = threading.Thread(target=self._pump_stdin, args=(raw,), name="stdin", daemon=True)
                pump.start()
            out, err = sys.stdout.buffer, sys.stderr.buffer
            for msg in responses:
                which = msg.WhichOneof("output")
                if which == "stdout":
                    self.output_seen = True
                    out.write(msg.stdout)
                    out.flush()
                elif which == "stderr":
                    self.output_seen = True
                    err.write(msg.stderr)
                    err.flush()
                elif which == "exit_code":
                    self.exit_code = msg.exit_code
        except Exception:
            if self.detached:
                return None
            raise
        finally:
            if saved is not None:
                import termios

                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            if old_winch is not None:
                signal.signal(signal.SIGWINCH, old_winch)
            if old_int is not None:
                signal.signal(signal.SIGINT, old_int)
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_END)
        return self.exit_code

    def _interrupt(self, responses: Any) -> Callable[..., None]:
        def handler(*_: object) -> None:
            self._interrupts += 1
            if self._interrupts == 1 and self._on_interrupt is not None:
                threading.Thread(target=self._on_interrupt, name="sigint", daemon=True).start()
                return
            self._detach()

        return handler


def _scan(data: bytes, keys: bytes) -> tuple[bytes, bytes]:
    """Split ``data`` into what goes to the container and the part of ``keys`` it ends with (all
    of ``keys`` when the sequence was typed: what followed it is dropped, as docker drops it)."""
    at = data.find(keys)
    if at >= 0:
        return data[:at], keys
    for n in range(min(len(keys) - 1, len(data)), 0, -1):  # a sequence cut by the read
        if data.endswith(keys[:n]):
            return data[:-n], keys[:n]
    return data, b""
