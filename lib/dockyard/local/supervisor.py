"""``dockyard up``: the whole platform on one machine, supervised.

Starts, in order: an embedded nats-server with JetStream, the event stream, then the
registry, runtime, builder and gateway as child processes, each waited for until its gRPC
health check says SERVING. A child that dies is restarted with backoff (and given up on
after repeated crashes, leaving the rest running). SIGINT/SIGTERM stop everything in the
reverse order: gateway first, NATS last, each with a grace period before SIGKILL.

State, all under one directory, so a second ``dockyard up`` finds everything intact::

    <state-dir>/
      up.lock            held while a supervisor runs (a second one on the same dir refuses)
      nats/              JetStream store (the event stream survives restarts)
      registry/ runtime/ builder/ gateway/   each service's own --state-dir
      sockets/           0700: registry.sock runtime.sock builder.sock, reached by the gateway only
      tls/               only with a TCP gateway: CA, server and client certificates (see adapters.grpc.tls)
      logs/<name>.log    each child's output

Access: the gateway listens on ``gateway_grpc`` — a unix socket (0660, group ``dockyard``) in a
0750 directory by default, or TCP with mutual TLS. The backends' sockets are in ``sockets/``,
which only the platform's user can enter; the registry's OCI HTTP port keeps its own auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dockyard.adapters.grpc.server import grpc_target, unix_path
from dockyard.adapters.grpc.tls import ClientTls, Material, ensure_material
from dockyard.adapters.host import PLATFORM_GROUP, backend_socket, public_socket
from dockyard.adapters.nats.bus import StreamSettings, close_quietly, connect, ensure_stream
from dockyard.adapters.nats.server import NatsServer
from dockyard.core import retry
from dockyard.core.errors import FailedPrecondition, Unavailable

log = structlog.get_logger("dockyard.up")

STOP_GRACE_S = 10.0
MAX_RESTARTS = 5  # within RESTART_WINDOW_S, then the service is left down
RESTART_WINDOW_S = 120.0


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    state_dir: Path
    nats_port: int = 4222
    registry_http: str = "127.0.0.1:5000"
    gateway_listen: str = ""  # unix:/path or host:port (TCP: mutual TLS); "" = public_socket(state_dir)
    socket_group: str = PLATFORM_GROUP
    ready_timeout_s: float = 60.0
    stream: StreamSettings = field(default_factory=StreamSettings.from_env)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def gateway_grpc(self) -> str:
        """The gateway's address in grpc form: ``unix:/path`` or ``host:port``."""
        return grpc_target(self.gateway_listen or f"unix:{public_socket(self.state_dir)}")

    @property
    def gateway_socket(self) -> Path | None:
        return unix_path(self.gateway_grpc)

    @property
    def sockets_dir(self) -> Path:
        return self.state_dir / "sockets"

    @property
    def tls(self) -> Material | None:
        """The TLS material of a TCP gateway (made on start), None for a unix socket."""
        return None if self.gateway_socket is not None else Material(self.state_dir / "tls")

    @property
    def registry_grpc(self) -> str:
        return backend_socket(self.state_dir, "registry")

    @property
    def runtime_grpc(self) -> str:
        return backend_socket(self.state_dir, "runtime")

    @property
    def builder_grpc(self) -> str:
        return backend_socket(self.state_dir, "builder")


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    grpc: str
    argv: tuple[str, ...]
    tls: ClientTls | None = None  # what the health check presents to a TCP gateway

    @property
    def health_target(self) -> str:
        """Where to check health: a wildcard TCP listen address is checked on loopback."""
        target = grpc_target(self.grpc)
        host, _, port = target.rpartition(":")
        return f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]", "::") else target


def child_specs(config: PlatformConfig) -> list[ChildSpec]:
    """The services to run, in start order (stopped in reverse)."""
    common = ("--nats-url", config.nats_url)

    def svc(name: str, grpc_addr: str, *extra: str) -> ChildSpec:
        state = str(config.state_dir / name)
        argv = (
            sys.executable,
            "-m",
            f"dockyard.{name}",
            *extra,
            "--grpc-listen",
            grpc_addr,
            "--state-dir",
            state,
        )
        return ChildSpec(name, grpc_addr, (*argv, *common))

    http_host, _, http_port = config.registry_http.rpartition(":")
    access: tuple[str, ...] = ("--socket-group", config.socket_group)
    tls = config.tls
    if tls is not None:
        server = tls.server
        access = ("--tlscacert", str(server.ca), "--tlscert", str(server.cert), "--tlskey", str(server.key))
    gateway = svc(
        "gateway",
        config.gateway_grpc,
        "--registry",
        config.registry_grpc,
        "--runtime",
        config.runtime_grpc,
        "--builder",
        config.builder_grpc,
        *access,
    )
    return [
        svc("registry", config.registry_grpc, "serve", "--host", http_host, "--port", http_port),
        svc("runtime", config.runtime_grpc),
        svc("builder", config.builder_grpc),
        replace(gateway, tls=tls.client if tls is not None else None),
    ]


class Child:
    """One supervised service process."""

    def __init__(self, spec: ChildSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self.restarts: list[float] = []

    async def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - closed in stop(); a local file
        self.process = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # the terminal's Ctrl-C reaches the supervisor only
        )

    async def wait_ready(self, deadline_s: float) -> None:
        """Return when health says SERVING; raise Unavailable with the log's tail if it dies or times out."""
        assert self.process is not None
        target = self.spec.health_target
        if self.spec.tls is not None:
            channel = grpc.aio.secure_channel(target, self.spec.tls.channel_credentials())
        else:
            channel = grpc.aio.insecure_channel(target)
        async with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            async for attempt in retry.startup(deadline_s):
                with attempt:
                    if self.process.returncode is not None:
                        raise FailedPrecondition(
                            f"{self.spec.name} exited with {self.process.returncode}:\n{self.tail()}"
                        )
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status != health_pb2.HealthCheckResponse.SERVING:
                        raise Unavailable(f"{self.spec.name} is not serving yet")

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
            except TimeoutError:
                log.warning("service did not stop in time; killing", service=self.spec.name)
                self.process.kill()
                await self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Supervisor:
    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.log_dir = config.state_dir / "logs"
        self.nats = NatsServer(
            store_dir=config.state_dir / "nats", port=config.nats_port, log_file=self.log_dir / "nats.log"
        )
        self.children = [Child(spec, self.log_dir) for spec in child_specs(config)]
        self._stopping = asyncio.Event()

    async def run(self, on_ready: Callable[[Supervisor], None] | None = None) -> int:
        """Run until a signal; returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.config.state_dir / "up.lock"):
            try:
                await asyncio.to_thread(self._prepare_access)
                await self._start_all()
                if on_ready is not None:
                    on_ready(self)
                watchers = [asyncio.create_task(self._watch(child)) for child in self.children]
                await self._stopping.wait()
                for watcher in watchers:
                    watcher.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
            finally:
                await self._stop_all()
        return 0

    def _prepare_access(self) -> None:
        """The private sockets directory, the gateway's socket directory or its TLS material."""
        sockets = self.config.sockets_dir
        sockets.mkdir(mode=0o700, exist_ok=True)
        sockets.chmod(0o700)
        public = self.config.gateway_socket
        if public is not None:
            if not public.parent.exists():
                public.parent.mkdir(mode=0o750, parents=True)
        else:
            host = self.config.gateway_grpc.rpartition(":")[0]
            ensure_material(self.config.state_dir / "tls", host.strip("[]"))

    async def _start_all(self) -> None:
        await asyncio.to_thread(self.nats.start)
        nc = await connect(self.nats.url, name="dockyard-up")
        try:
            await ensure_stream(nc, self.config.stream)
        finally:
            await close_quietly(nc)
        for child in self.children:
            if self._stopping.is_set():
                return
            await child.start()
            await child.wait_ready(self.config.ready_timeout_s)
            log.info("service ready", service=child.spec.name, grpc=child.spec.grpc)

    async def _watch(self, child: Child) -> None:
        """Restart ``child`` when it dies, with backoff; give up after repeated crashes."""
        while not self._stopping.is_set():
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(child.restarts) > MAX_RESTARTS:
                log.error(
                    "service keeps crashing; leaving it down",
                    service=child.spec.name,
                    log=str(child.log_path),
                )
                return
            delay = min(2 ** (len(child.restarts) - 1), 30)
            log.warning("service exited; restarting", service=child.spec.name, code=code, in_s=delay)
            await asyncio.sleep(delay)
            await child.stop()  # closes the old log handle
            await child.start()
            with contextlib.suppress(Exception):
                await child.wait_ready(self.config.ready_timeout_s)

    async def _stop_all(self) -> None:
        for child in reversed(self.children):
            await child.stop()
        await asyncio.to_thread(self.nats.stop)
        log.info("platform stopped")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise FailedPrecondition(
                f"another `dockyard up` (pid {holder}) is running on {lock_path.parent}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
