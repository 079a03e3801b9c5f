"""``docker exec``: a process started by ``runc exec`` in a running container.

Exec processes are short-lived and belong to the client that asked for them, so they are the
service's children (unlike containers). Without a TTY, stdio are pipes; with one, runc hands
us the pty master over a console socket (SCM_RIGHTS) and we relay it.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import tempfile
import termios
from collections.abc import AsyncIterator
from pathlib import Path

from dockyard.core.errors import FailedPrecondition

STDOUT = "stdout"
STDERR = "stderr"
CHUNK = 1 << 15


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
        with tempfile.TemporaryDirectory(prefix="dockyard-exec-") as tmp:
            path = Path(tmp) / "console.sock"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(1)
            listener.setblocking(False)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                "-t",
                "--console-socket",
                str(path),
                cid,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            loop = asyncio.get_running_loop()
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            exited = asyncio.ensure_future(proc.wait())
            done, _ = await asyncio.wait({accept, exited}, return_when=asyncio.FIRST_COMPLETED)
            if accept not in done:
                accept.cancel()
                listener.close()
                err = await proc.stderr.read() if proc.stderr else b""
                raise FailedPrecondition(f"exec failed: {err.decode(errors='replace').strip()}")
            conn, _ = accept.result()
            listener.close()
            master = await loop.run_in_executor(None, _recv_fd, conn)
            conn.close()
        set_winsize(master, rows, cols)
        os.set_blocking(master, False)
        session = cls(proc, master)
        session._readers = [asyncio.create_task(session._pump_pty(master))]
        session._finisher = asyncio.create_task(session._finish())
        return session

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        while chunk := await stream.read(CHUNK):
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

    async def wait(self) -> int:
        code = await self._proc.wait()
        if self._master is not None:
            await asyncio.gather(*self._readers, return_exceptions=True)
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()


def _recv_fd(conn: socket.socket) -> int:
    conn.setblocking(True)
    fds = array.array("i")
    _msg, ancdata, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
            return fds[0]
    raise FailedPrecondition("runc did not send a terminal")


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
