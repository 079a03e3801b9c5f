"""Container processes: conmon holds each container's stdio, log and exit code; runc runs it.

The runtime service is never a container's parent. ``Monitor.create`` starts Debian's conmon,
which double-forks away from us, runs ``runc create`` and then waits on the container for as
long as it lives — so the service can be restarted or killed with -9 while containers run.
What conmon leaves behind is all the state a new service needs::

    <container-dir>/
      bundle/config.json   the OCI runtime spec
      bundle/attach        conmon's attach socket (SOCK_SEQPACKET: byte 0 = 2 stdout / 3 stderr)
      bundle/ctl           conmon's control fifo ("1 <rows> <cols>\\n" resizes the terminal)
      bundle/pidfile       the container's init pid (written by runc)
      bundle/conmon.pid    conmon's pid
      ctr.log              k8s-file log: "<RFC3339Nano> stdout|stderr F|P <bytes>\\n"
      exit                 the exit code, written by conmon when the container ends
      oom                  present when the kernel OOM killer ended it

While this service lives it also keeps conmon's sync pipe, on which conmon reports the
container pid and then its exit code: no polling on the fast path. A service that adopts
containers from a previous incarnation watches their ``exit`` files instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from dockyard.core.errors import FailedPrecondition, Reason, Unavailable
from dockyard.core.tools import find_tool

log = structlog.get_logger(__name__)

STDOUT_PIPE = 2
STDERR_PIPE = 3
WIN_RESIZE_EVENT = 1


@dataclass(frozen=True, slots=True)
class Paths:
    """Where one container's monitor keeps its files."""

    root: Path

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def log(self) -> Path:
        return self.root / "ctr.log"

    @property
    def exit(self) -> Path:
        return self.root / "exit"

    @property
    def oom(self) -> Path:
        return self.root / "oom"

    @property
    def pidfile(self) -> Path:
        return self.bundle / "pidfile"

    @property
    def conmon_pidfile(self) -> Path:
        return self.bundle / "conmon.pid"

    @property
    def attach(self) -> Path:
        return self.bundle / "attach"

    @property
    def ctl(self) -> Path:
        return self.bundle / "ctl"


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Monitor:
    """conmon + runc for every container of this node; one instance per runtime service."""

    def __init__(self, runc_root: Path, runtime: str = "runc") -> None:
        self.runc_root = runc_root
        self.runtime = find_tool(runtime) or runtime
        self.conmon = find_tool("conmon") or "/usr/bin/conmon"
        runc_root.mkdir(parents=True, exist_ok=True)

    def runc_argv(self, *args: str) -> list[str]:
        return [self.runtime, "--root", str(self.runc_root), *args]

    async def create(self, cid: str, name: str, paths: Paths, *, tty: bool, stdin: bool) -> tuple[int, int]:
        """Start conmon, which runs ``runc create``; returns (container pid, sync-pipe read fd).

        The container is created, not started: namespaces exist (so networking can be set up
        against its pid) and the process waits for :meth:`start`. The caller owns the returned
        fd: conmon writes the exit code to it when the container ends (see :meth:`wait_sync`).
        """
        for stale in (paths.exit, paths.oom, paths.pidfile, paths.attach, paths.ctl):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        argv = [
            self.conmon,
            "--api-version", "1",
            "-c", cid,
            "-u", cid,
            "-n", name,
            "-r", self.runtime,
            "-b", str(paths.bundle),
            "-p", str(paths.pidfile),
            "-P", str(paths.conmon_pidfile),
            "-l", f"k8s-file:{paths.log}",
            "--exit-dir", str(paths.root),
            "--persist-dir", str(paths.root),
            "--socket-dir-path", str(paths.bundle),
            "--full-attach",
            "--no-new-keyring",  # runc create --no-new-keyring: no session keyring of the user's quota
            "--log-level", "error",
            "--runtime-arg", "--root",
            "--runtime-arg", str(self.runc_root),
        ]  # fmt: skip
        if tty:  # a terminal has no end of input: a client that leaves (detaches) leaves it open
            argv += ["-t", "--leave-stdin-open"]
        if stdin:
            argv.append("-i")
        sync_r, sync_w = os.pipe()
        os.set_inheritable(sync_w, True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "_OCI_SYNCPIPE": str(sync_w)}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(sync_w,),
                env=env,
                start_new_session=True,
                cwd=str(paths.bundle),
            )
        except OSError as exc:
            os.close(sync_r)
            raise Unavailable(f"cannot start conmon: {exc}") from exc
        finally:
            os.close(sync_w)
        _, err = await proc.communicate()  # conmon's first process exits after its double fork
        if proc.returncode != 0:
            os.close(sync_r)
            raise FailedPrecondition(f"conmon failed: {err.decode(errors='replace').strip()}")
        try:
            message = await _read_sync(sync_r)
        except BaseException:
            os.close(sync_r)
            raise
        pid = message.get("data", -1)
        if not isinstance(pid, int) or pid <= 0:
            os.close(sync_r)
            raise start_failure(_runtime_error(str(message.get("message", ""))))
        return pid, sync_r

    async def start(self, cid: str, pid: int) -> None:
        """Let a created container's process (init ``pid``) run.

        ``runc start`` does nothing but open runc's ``exec.fifo`` for reading — the container's
        init, blocked writing to it, then execs the user's process — read it to the end and remove
        it. Doing the same here spares a runc process on the path of every start; should the fifo
        not be there (another runtime, a runc that works otherwise), ``runc start`` decides.
        """
        fifo = self.runc_root / cid / "exec.fifo"
        try:
            started = await asyncio.to_thread(_release_exec_fifo, fifo, pid)
        except OSError:
            started = False
        if not started:
            await self._run_runc("start", cid)

    async def kill(self, cid: str, sig: int) -> None:
        """Signal the container's init. SIGKILL to it ends every process: it is its pid namespace's
        init. (``runc kill --all`` needs a cgroup, which a rootless container may not have.)"""
        await self._run_runc("kill", cid, str(sig), missing_ok=True)

    async def pause(self, cid: str) -> None:
        await self._run_runc("pause", cid)

    async def resume(self, cid: str) -> None:
        await self._run_runc("resume", cid)

    # --- resource limits (dockyard.runtime.cgroups) ---
    async def update(self, cid: str, resources: dict[str, object]) -> None:
        """Apply ``linux.resources`` to the running container's cgroup (``runc update -r -``)."""
        proc = await asyncio.create_subprocess_exec(
            *self.runc_argv("update", "-r", "-", cid),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate(json.dumps(resources).encode())
        if proc.returncode != 0:
            raise FailedPrecondition(f"update: {_runtime_error(err.decode(errors='replace'))}")

    # --- end resource limits ---

    async def delete(self, cid: str) -> None:
        """Remove runc's record of a stopped container (force: tolerate a half-made one)."""
        await self._run_runc("delete", "--force", cid, missing_ok=True)

    def forget(self, cid: str) -> None:
        """Drop runc's record of a container conmon saw exit: what ``runc delete`` does for a
        stopped container without hooks (its cgroup is the caller's to remove), without spawning
        runc on the path of every exit."""
        shutil.rmtree(self.runc_root / cid, ignore_errors=True)

    async def state(self, cid: str) -> dict[str, object] | None:
        proc = await asyncio.create_subprocess_exec(
            *self.runc_argv("state", cid), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return None
        try:
            state: dict[str, object] = json.loads(out)
        except ValueError:
            return None
        return state

    async def _run_runc(self, *args: str, missing_ok: bool = False) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.runc_argv(*args), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            why = _runtime_error(err.decode(errors="replace"))
            if missing_ok and ("does not exist" in why or "not running" in why or "not exist" in why):
                return
            raise FailedPrecondition(f"{args[0]}: {why}")

    @staticmethod
    async def wait_sync(fd: int) -> int | None:
        """Block until conmon reports the exit code on the sync pipe; None if the pipe closed early."""
        try:
            message = await _read_sync(fd)
        except (OSError, ValueError, EOFError):
            return None
        finally:
            os.close(fd)
        code = message.get("data")
        return int(code) if isinstance(code, int) else None

    @staticmethod
    def exit_code(paths: Paths) -> int | None:
        """The exit code conmon recorded, or None while the container has not exited."""
        return read_int(paths.exit)

    @staticmethod
    def monitor_alive(paths: Paths) -> bool:
        return alive(read_int(paths.conmon_pidfile))

    @staticmethod
    def resize(paths: Paths, rows: int, cols: int) -> None:
        """Tell conmon the terminal's new size (a line on its control fifo)."""
        with contextlib.suppress(OSError):
            fd = os.open(paths.ctl, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, f"{WIN_RESIZE_EVENT} {rows} {cols}\n".encode())
            finally:
                os.close(fd)


async def _read_sync(fd: int) -> dict[str, object]:
    """Read one JSON line from a conmon sync pipe without blocking the loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        line = await reader.readline()
    finally:
        transport.close()
    if not line:
        raise EOFError("conmon closed its sync pipe")
    message: dict[str, object] = json.loads(line)
    return message


def _release_exec_fifo(fifo: Path, pid: int) -> bool:
    """Read runc's exec fifo to its end and remove it, as ``runc start`` does; False if absent.

    The container's init opens the fifo for writing, writes one byte, then execs (closing it). We
    wait for that byte with poll, checking the init is alive meanwhile, so a dead init cannot
    hang us; then read to EOF — the init has exec'd or died.
    """
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(100):
            if not alive(pid):
                raise FailedPrecondition("the container's init is gone before it could start")
        os.set_blocking(fd, True)
        data = b""
        while chunk := os.read(fd, 64):
            data += chunk
    finally:
        os.close(fd)
    if not data:
        raise FailedPrecondition("the container's init is gone before it could start")
    fifo.unlink()
    return True


def start_failure(why: str) -> FailedPrecondition:
    """The error of a process runc could not start, with docker's reason when its command is
    missing (exit 127) or cannot be executed (126)."""
    text = why.lower()
    if "executable file not found" in text or "no such file or directory" in text:
        return FailedPrecondition(why, reason=Reason.COMMAND_NOT_FOUND)
    if "permission denied" in text:
        return FailedPrecondition(why, reason=Reason.COMMAND_NOT_EXECUTABLE)
    return FailedPrecondition(why)


def _runtime_error(text: str) -> str:
    """runc's last meaningful line ("… msg=\\"exec: \\"nosuch\\": executable file not found\\"")."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "the OCI runtime failed without a message"
    last = lines[-1]
    if 'msg="' in last:
        last = last.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return last


class AttachStream:
    """A connection to conmon's attach socket: container output in, stdin out."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    async def connect(cls, paths: Paths) -> AttachStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        # The socket's path is longer than a sockaddr_un holds; reach it through an fd of its dir.
        dir_fd = os.open(paths.attach.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dir_fd}/attach")
        except OSError as exc:
            sock.close()
            raise FailedPrecondition(f"cannot attach: {exc.strerror or exc}") from exc
        finally:
            os.close(dir_fd)
        return cls(sock)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(pipe, bytes) until conmon closes the socket (the container's stdio ended)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet = await loop.sock_recv(self._sock, 8193)
            except OSError:
                return
            if not packet:
                return
            yield packet[0], packet[1:]

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for i in range(0, len(data), 8192):
            await loop.sock_sendall(self._sock, data[i : i + 8192])

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._sock.close()
