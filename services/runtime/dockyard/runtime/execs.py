"""``docker exec``: a process started by ``runc exec`` in a running container.

Exec processes are short-lived and belong to the client that asked for them, so they are the
service's children (unlike containers). Without a TTY, stdio are pipes; with one, runc hands
us the pty master over a console socket (SCM_RIGHTS) and we relay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator

STDOUT = "stdout"
STDERR = "stderr"
CHUNK = 1 << 15
NOT_FOUND = b"executable file not found"


def set_winsize(fd: int, rows: int, cols: int) -> None:
    if rows and cols:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class ExecSession:
    """One exec'd process: its output, its stdin, its exit code."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        self._proc = proc
        self._master = master
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=64)
        self._readers: list[asyncio.Task[None]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._not_found = False

    @classmethod
    async def start(
        cls,
        runc: list[str],
        cid: str,
        args: list[str],
        *,
        env: list[str],
        cwd: str,
        uid: int,
        gid: int,
        tty: bool,
        interactive: bool,
        rows: int = 0,
        cols: int = 0,
    ) -> ExecSession:
        argv = [*runc, "exec", "--user", f"{uid}:{gid}"]
        if cwd:
            argv += ["--cwd", cwd]
        for e in env:
            argv += ["--env", e]
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cid,
                *args,
                stdin=asyncio.subprocess.PIPE if interactive else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            session = cls(proc, None)
            assert proc.stdout is not None and proc.stderr is not None
            session._readers = [
                asyncio.create_task(session._pump(proc.stdout, STDOUT)),
                asyncio.create_task(session._pump(proc.stderr, STDERR)),
            ]
            session._finisher = asyncio.create_task(session._finish())
            return session
        # runc relays a terminal it makes in the container to its own stdio when that is a tty:
        # give it the slave side of a pty of ours and relay the master.
        master, slave = os.openpty()
        set_winsize(master, rows, cols)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, "-t", cid, *args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        session = cls(proc, master)
        session._readers = [asyncio.create_task(session._pump_pty(master))]
        session._finisher = asyncio.create_task(session._finish())
        return session

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        while chunk := await stream.read(CHUNK):
            if name == STDERR and chunk.startswith(b"time=") and b"level=error" in chunk:
                chunk = _runc_message(chunk)  # runc's own failure, not the process's output
                self._not_found = NOT_FOUND in chunk
            await self._queue.put((name, chunk))

    async def _pump_pty(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the last holder of the slave side is gone
                    return
                if not chunk:
                    return
                await self._queue.put((STDOUT, chunk))
        finally:
            loop.remove_reader(fd)

    async def _finish(self) -> None:
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._queue.put(None)

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def write(self, data: bytes) -> None:
        if self._master is not None:
            await asyncio.get_running_loop().run_in_executor(None, _write_all, self._master, data)
        elif self._proc.stdin is not None:
            self._proc.stdin.write(data)
            await self._proc.stdin.drain()

    def close_stdin(self) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.write(self._master, b"\x04")  # ^D on a terminal
        elif self._proc.stdin is not None:
            self._proc.stdin.close()

    def resize(self, rows: int, cols: int) -> None:
        if self._master is not None:
            set_winsize(self._master, rows, cols)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGWINCH)  # runc copies the new size into the container

    async def wait(self) -> int:
        code = await self._proc.wait()
        if self._master is not None:
            await asyncio.gather(*self._readers, return_exceptions=True)
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        if code == 255 and self._not_found:
            return 127  # as docker: the command does not exist in the container
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()


def _runc_message(line: bytes) -> bytes:
    """``time=… level=error msg="exec failed: …"`` → ``exec failed: …`` and a newline."""
    _, _, msg = line.partition(b'msg="')
    return msg.rstrip().removesuffix(b'"').replace(b'\\"', b'"') + b"\n" if msg else line


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]
