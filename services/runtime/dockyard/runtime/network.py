"""Container networking, rootless: slirp4netns per container, ports forwarded through its API.

``--network slirp4netns`` (the default) gives the container its own network namespace with a
tap device ``tap0`` at 10.0.2.100, a gateway at 10.0.2.2 and DNS at 10.0.2.3, and outbound
access through slirp4netns in the host's namespace. ``-p HOST:CONTAINER`` is an
``add_hostfwd`` on slirp4netns' API socket: the host port is bound by slirp4netns (as the
platform's user) and forwarded to the container. slirp4netns runs in its own session, so it
outlives a restart of the service, like the container it serves::

    <container-dir>/
      slirp.pid     slirp4netns' pid (killed when the container stops)
      slirp.sock    its API socket
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dockyard.core.errors import FailedPrecondition, InvalidArgument, Reason, Unavailable
from dockyard.core.tools import find_tool
from dockyard.runtime import outliving

CONTAINER_IP = "10.0.2.100"
DNS_IP = "10.0.2.3"
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class PortForward:
    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol}"


def free_port(host_ip: str, protocol: str) -> int:
    """A port the kernel says is free now (for ``-P`` and ``-p CONTAINER``)."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host_ip or "0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


class Slirp:
    """Starts and stops one slirp4netns per container network namespace."""

    def __init__(self) -> None:
        self.binary = find_tool("slirp4netns") or "/usr/bin/slirp4netns"

    async def attach(self, pid: int, root: Path, ports: Iterable[PortForward]) -> None:
        """Connect the netns of ``pid`` to the outside, publish ``ports``; on failure nothing is left."""
        sock = root / "slirp.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        ready_r, ready_w = os.pipe()
        argv = [
            self.binary,
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--api-socket=slirp.sock",  # relative to cwd: the full path outgrows sockaddr_un
            f"--ready-fd={ready_w}",
            str(pid),
            "tap0",
        ]
        try:
            pid = await asyncio.to_thread(outliving.start, argv, pass_fds=(ready_w,), cwd=root)
        except OSError as exc:
            os.close(ready_r)
            raise Unavailable(f"cannot start slirp4netns: {exc}") from exc
        finally:
            os.close(ready_w)
        (root / "slirp.pid").write_text(str(pid))
        try:
            ok = await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 1), READY_TIMEOUT_S)
            if ok != b"1":
                raise FailedPrecondition("slirp4netns exited before the network was up")
            for port in ports:
                await self._add_hostfwd(sock, port)
        except BaseException:
            self.detach(root)
            raise
        finally:
            os.close(ready_r)

    async def _add_hostfwd(self, sock: Path, port: PortForward) -> None:
        request = {
            "execute": "add_hostfwd",
            "arguments": {
                "proto": port.protocol,
                "host_addr": port.host_ip or "0.0.0.0",
                "host_port": port.host_port,
                "guest_addr": CONTAINER_IP,
                "guest_port": port.container_port,
            },
        }
        dir_fd = os.open(sock.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            reader, writer = await asyncio.open_unix_connection(f"/proc/self/fd/{dir_fd}/{sock.name}")
        finally:
            os.close(dir_fd)
        try:
            writer.write(json.dumps(request).encode())
            writer.write_eof()
            reply = json.loads(await reader.read() or b"{}")
        finally:
            writer.close()
        if "error" in reply:
            desc = reply["error"].get("desc", reply["error"])
            if "bind" in str(desc) or "in use" in str(desc):
                raise InvalidArgument(
                    f"cannot publish {port}: host port {port.host_port} is taken", reason=Reason.PORT_TAKEN
                )
            raise FailedPrecondition(f"cannot publish {port}: {desc}")

    @staticmethod
    def running(root: Path) -> bool:
        """Whether the container's slirp4netns (its pid file's) still runs."""
        return outliving.running(root / "slirp.pid", "slirp4netns") is not None

    @staticmethod
    def detach(root: Path) -> None:
        """Stop the container's slirp4netns, if any (idempotent)."""
        pid_file = root / "slirp.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        with contextlib.suppress(FileNotFoundError):
            (root / "slirp.sock").unlink()
