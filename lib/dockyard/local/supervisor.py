"""``dockyard up``: the whole platform on one machine, supervised.

Start-up, in order:

1. take ``up.lock`` (a second supervisor on the same state directory refuses);
2. stop what a dead supervisor left running on this state directory (``up.pids``, see
   :mod:`dockyard.local.procs`);
3. check that the TCP ports (NATS, the registry's HTTP, a TCP gateway) are free and that no live
   server answers on the gateway's socket; if not, fail at once with one line naming the port and,
   where it can be seen, who holds it (:mod:`dockyard.local.ports`);
4. start nats-server and the four services **at once**, then wait for all of them: nats-server
   until it answers with this run's server name, each service until its gRPC health says SERVING
   *and* its System.Info names this run's instance id (a fresh id per run, handed to every child
   in ``$DOCKYARD_INSTANCE_ID``). So "ready" proves each address reached this platform's own
   process, never another platform's on the same address. Then the event stream is ensured.

Every child — nats-server included — is supervised the same way: one that dies is restarted with
backoff (1 s, 2 s, 4 s … 30 s), and given up on after repeated crashes, leaving the rest running.
A restarted nats-server finds its JetStream store again, and the services' outboxes deliver the
events that waited meanwhile. SIGINT/SIGTERM stop everything: the gateway first, then the
backends together, NATS last, each with a grace period before SIGKILL.

Children die with the supervisor: each is started through ``setpriv --pdeathsig TERM``, so the
kernel sends it SIGTERM when the supervisor dies, however it dies (``kill -9`` included). The
signal is kept across the child's own ``exec`` (the runtime's ``nsenter`` re-exec: same pid, no
set-uid bit) and not inherited by its forks, so what the runtime starts to outlive it — the
pause process holding the node's user namespace, conmon, runc, slirp4netns — keeps running, and
with it the containers (as with podman). Whatever still runs of a dead supervisor's children is
stopped by the next ``dockyard up`` on the same state directory (step 2).

State, all under one directory, so a second ``dockyard up`` finds everything intact::

    <state-dir>/
      up.lock            held while a supervisor runs (a second one on the same dir refuses)
      up.pids            the supervisor's children as (pid, start time): what to stop if it dies
      nats/              JetStream store (the event stream survives restarts)
      nats-auth/         0700: nats-server.conf (users as bcrypt hashes, permissions, JetStream
                         limits) and <identity>.json per service + admin (this supervisor), 0600;
                         fresh secrets on every start (see adapters.nats.auth)
      registry-auth/     0700: the registry's htpasswd, access rules and token secret, the login
                         it hands out (client.json) and the runtime's own (platform-auth.json),
                         0600 (see dockyard.local.registry_auth); none with --registry-auth none
      registry/ runtime/ builder/ gateway/   each service's own --state-dir
      sockets/           0700: registry.sock runtime.sock builder.sock, reached by the gateway only
      tls/               only with a TCP gateway: CA, server and client certificates (see adapters.grpc.tls)
      logs/<name>.log    each child's output (nats.log for nats-server), rotated by size:
                         <name>.log.1 … (see dockyard.local.logs: 10 MiB x 3 files by default)

Access: the gateway listens on ``gateway_grpc`` — a unix socket (0660, group ``dockyard``) in a
0750 directory by default, or TCP with mutual TLS. Beside that socket, ``docker.sock`` serves the
Docker Engine API (``dockyard-engine``, a client of the gateway) under the same mode and group.
The backends' sockets are in ``sockets/``,
which only the platform's user can enter. The registry's OCI HTTP port (loopback TCP, so every
local user reaches it) requires credentials to push or delete, and to pull unless
``registry_anonymous_pull``: the runtime logs in with its own, users get one from
``dockyard registry credentials`` (``registry_auth="none"`` opens it, on purpose only).
nats-server listens on loopback only (it has no unix socket for clients) and refuses a connection
without credentials; each service logs in as its own identity, allowed to publish only its own
areas' events (the gateway reads the stream and announces only itself; only ``up`` manages it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dockyard.adapters.grpc.channel import service_channel
from dockyard.adapters.grpc.server import grpc_target, unix_path
from dockyard.adapters.grpc.tls import ClientTls, Material, ensure_material
from dockyard.adapters.host import PLATFORM_GROUP, backend_socket, public_socket
from dockyard.adapters.nats.auth import ADMIN, NatsAuth, adopt_unauthenticated_store, fit_to_disk, write_auth
from dockyard.adapters.nats.bus import StreamSettings, close_quietly, connect, ensure_stream
from dockyard.adapters.nats.server import NatsServer, server_info
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.core import private
from dockyard.core.errors import FailedPrecondition, Unavailable
from dockyard.core.service import INSTANCE_ENV
from dockyard.local.logs import RotatingLog, Rotation
from dockyard.local.ports import require_tcp_free, require_unix_free
from dockyard.local.procs import PidRecord, ProcessId, identify, stop_leftovers
from dockyard.local.registry_auth import RegistryAuth, write_registry_auth

log = structlog.get_logger("dockyard.up")

STOP_GRACE_S = 10.0
MAX_RESTARTS = 5  # within RESTART_WINDOW_S, then the service is left down
RESTART_WINDOW_S = 120.0
PROBE_TIMEOUT_S = 1.0
DOCKER_SOCKET = "docker.sock"


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    state_dir: Path
    nats_port: int = 4222
    registry_http: str = "127.0.0.1:5000"
    registry_auth: str = "token"  # token | basic | none (see dockyard.local.registry_auth)
    registry_anonymous_pull: bool = False  # with token/basic: callers without credentials may pull
    gateway_listen: str = ""  # unix:/path or host:port (TCP: mutual TLS); "" = public_socket(state_dir)
    socket_group: str = PLATFORM_GROUP
    ready_timeout_s: float = 60.0
    stream: StreamSettings = field(default_factory=StreamSettings.from_env)
    logs: Rotation = field(default_factory=Rotation.from_env)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def nats_auth(self) -> NatsAuth:
        """nats-server's config and each service's NATS credentials (0600, in a 0700 directory)."""
        return NatsAuth(self.state_dir / "nats-auth")

    @property
    def registry_logins(self) -> RegistryAuth:
        """The registry's users, rules and token secret, the runtime's login (0600, in a 0700 directory)."""
        return RegistryAuth(self.state_dir / "registry-auth")

    @property
    def gateway_grpc(self) -> str:
        """The gateway's address in grpc form: ``unix:/path`` or ``host:port``."""
        return grpc_target(self.gateway_listen or f"unix:{public_socket(self.state_dir)}")

    @property
    def gateway_socket(self) -> Path | None:
        return unix_path(self.gateway_grpc)

    @property
    def docker_socket(self) -> Path | None:
        """The Docker Engine API's socket, beside the gateway's (same directory, same mode and
        group); None with a TCP gateway."""
        socket = self.gateway_socket
        return socket.parent / DOCKER_SOCKET if socket is not None else None

    @property
    def docker_api(self) -> str:
        """Where the Docker Engine API serves, as docker's DOCKER_HOST: ``unix:///…/docker.sock``,
        or with a TCP gateway on PORT, ``tcp://HOST:PORT+1`` with the gateway's mutual TLS."""
        socket = self.docker_socket
        if socket is not None:
            return f"unix://{socket}"
        host, _, port = self.gateway_grpc.rpartition(":")
        return f"tcp://{host}:{int(port) + 1}"

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

    def svc(name: str, grpc_addr: str, *extra: str) -> ChildSpec:
        state = str(config.state_dir / name)
        # the path of its credentials, never the secret: a command line is visible to every user
        nats = (
            "--nats-url",
            config.nats_url,
            "--nats-credentials",
            str(config.nats_auth.credentials_file(name)),
        )
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
        return ChildSpec(name, grpc_addr, (*argv, *nats))

    http_host, _, http_port = config.registry_http.rpartition(":")
    access: tuple[str, ...] = ("--socket-group", config.socket_group)
    tls = config.tls
    if tls is not None:
        server = tls.server
        access = ("--tlscacert", str(server.ca), "--tlscert", str(server.cert), "--tlskey", str(server.key))
    access = (*access, "--docker-api", config.docker_api)
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
    logins = config.registry_logins
    registry_auth = logins.registry_flags(config.registry_auth)
    # the runtime logs in to the platform's registry by itself (after the node's `dockyard login`s)
    platform_login = () if config.registry_auth == "none" else ("--platform-auth", str(logins.platform))
    return [
        svc(
            "registry",
            config.registry_grpc,
            "serve",
            "--host",
            http_host,
            "--port",
            http_port,
            *registry_auth,
        ),
        svc("runtime", config.runtime_grpc, *platform_login),
        svc("builder", config.builder_grpc),
        replace(gateway, tls=tls.client if tls is not None else None),
    ]


def die_with_parent() -> tuple[str, ...]:
    """The command prefix that makes a child get SIGTERM when the supervisor dies (Linux).

    ``setpriv --pdeathsig`` (util-linux) sets PR_SET_PDEATHSIG and execs the command: no Python
    runs between fork and exec in this (threaded) process.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise FailedPrecondition("setpriv not found (package util-linux): run `make setup`")
    return (setpriv, "--pdeathsig", "TERM", "--")


class NotOurs(FailedPrecondition):
    """Something answered at a child's address, but it belongs to another platform."""


class Child:
    """One supervised process: started with the instance id, its output in a rotated log."""

    def __init__(
        self, name: str, argv: tuple[str, ...], log_path: Path, instance: str, logs: Rotation
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.instance = instance
        self.rotation = logs
        self.process: asyncio.subprocess.Process | None = None
        self.identity: ProcessId | None = None
        self.restarts: list[float] = []
        self._log: RotatingLog | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self, prefix: tuple[str, ...]) -> None:
        if self._log is None:
            self._log = RotatingLog(self.log_path, self.rotation)
        self.process = await asyncio.create_subprocess_exec(
            *prefix,
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C reaches the supervisor only
            env={**os.environ, INSTANCE_ENV: self.instance},
        )
        self.identity = identify(self.process.pid)
        assert self.process.stdout is not None
        pump = asyncio.create_task(self._pump(self.process.stdout), name=f"log-{self.name}")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        chunk_size = min(64 * 1024, self.rotation.max_bytes)
        while chunk := await stream.read(chunk_size):
            if self._log is not None:
                self._log.write(chunk)

    async def probe(self) -> None:
        """Return when this child serves as this platform's; raise otherwise (NotOurs: definitely not)."""
        raise NotImplementedError

    async def wait_ready(self, deadline_s: float) -> None:
        """Return when :meth:`probe` passes; raise at once if the child exits or another platform
        answers at its address, and with the last error once ``deadline_s`` has passed."""
        assert self.process is not None
        deadline = time.monotonic() + deadline_s
        pause = 0.02
        while True:
            if self.process.returncode is not None:
                await self._drain_output()
                raise FailedPrecondition(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                await self.probe()
                return
            except NotOurs:
                raise
            except Exception as exc:  # any failure to answer means "not yet"
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"{self.name} not ready within {deadline_s:.0f}s ({exc}):\n{self.tail()}"
                    ) from None
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.2)

    async def _drain_output(self) -> None:
        """Let the log catch up with what a dead child wrote (its pipe may stay open in grandchildren)."""
        if self._pumps:
            await asyncio.wait(set(self._pumps), timeout=0.5)

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
                log.warning("service did not stop in time; killing", service=self.name)
                self.process.kill()
                await self.process.wait()

    async def close(self) -> None:
        """After the last stop: finish copying output, close the log."""
        await self._drain_output()
        for pump in set(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._log is not None:
            self._log.close()
            self._log = None


class ServiceChild(Child):
    """A Dockyard service: ready when its gRPC health says SERVING and its Info names our instance."""

    def __init__(self, spec: ChildSpec, log_dir: Path, instance: str, logs: Rotation) -> None:
        super().__init__(spec.name, spec.argv, log_dir / f"{spec.name}.log", instance, logs)
        self.spec = spec

    async def probe(self) -> None:
        target = self.spec.health_target
        path = unix_path(target)
        if path is not None and not path.exists():
            raise Unavailable(f"{self.name} has not made {path} yet")
        credentials = self.spec.tls.channel_credentials() if self.spec.tls is not None else None
        async with service_channel(target, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise Unavailable(f"{self.name} is not serving yet")
            info = await system_pb2_grpc.SystemStub(channel).Info(
                system_pb2.InfoRequest(), timeout=PROBE_TIMEOUT_S
            )
        if info.instance_id != self.instance:
            raise NotOurs(
                f"{self.spec.grpc} is answered by {info.service or 'a service'} of another platform "
                f"(instance {info.instance_id or 'none'}), not by this one's {self.name}"
            )


class EngineChild(Child):
    """dockyard-engine, the Docker Engine API: ready when its ``/_ping`` names our instance."""

    def __init__(self, config: PlatformConfig, log_dir: Path, instance: str) -> None:
        self.address = config.docker_api
        argv: tuple[str, ...] = (
            sys.executable,
            "-m",
            "dockyard.engine",
            "--listen",
            self.address,
            "--gateway",
            config.gateway_grpc,
            "--socket-group",
            config.socket_group,
            "--state-dir",
            str(config.state_dir / "engine"),
        )
        self.tls = config.tls
        if self.tls is not None:  # serves with the gateway's certificate, reaches it with the client's
            server, client = self.tls.server, self.tls.client
            argv += ("--tlscacert", str(server.ca), "--tlscert", str(server.cert))
            argv += ("--tlskey", str(server.key))
            argv += ("--gateway-tlscert", str(client.cert), "--gateway-tlskey", str(client.key))
        super().__init__("engine", argv, log_dir / "engine.log", instance, config.logs)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("unix://"):
            return await asyncio.open_unix_connection(self.address.removeprefix("unix://"))
        host, _, port = self.address.removeprefix("tcp://").rpartition(":")
        assert self.tls is not None
        client = self.tls.client
        context = ssl.create_default_context(cafile=str(client.ca))
        context.load_cert_chain(str(client.cert), str(client.key))
        target = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host.strip("[]")
        return await asyncio.open_connection(target, int(port), ssl=context, server_hostname=target)

    async def probe(self) -> None:
        reader, writer = await asyncio.wait_for(self._connect(), PROBE_TIMEOUT_S)
        try:
            writer.write(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PROBE_TIMEOUT_S)
        finally:
            writer.close()
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if " 200 " not in lines[0] + " ":
            raise Unavailable(f"engine answers {lines[0]!r}")
        if headers.get("dockyard-instance") != self.instance:
            raise NotOurs(f"{self.address} is answered by another platform's Docker API, not this one's")


class NatsChild(Child):
    """nats-server: ready when what answers on its port calls itself by this run's server name."""

    def __init__(self, server: NatsServer, log_dir: Path, instance: str, logs: Rotation) -> None:
        super().__init__("nats", tuple(server.command()), log_dir / "nats.log", instance, logs)
        self.server = server

    async def probe(self) -> None:
        info = await asyncio.to_thread(server_info, self.server.host, self.server.port, PROBE_TIMEOUT_S)
        if info.get("server_name") != self.server.name:
            raise NotOurs(
                f"port {self.server.port} (NATS) is answered by nats-server {info.get('server_name')!r}, "
                f"not by this platform's {self.server.name!r}"
            )


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Supervisor:
    def __init__(self, config: PlatformConfig, instance: str | None = None) -> None:
        self.config = config
        self.instance = instance or uuid.uuid4().hex
        self.log_dir = config.state_dir / "logs"
        self.record = PidRecord(config.state_dir / "up.pids")
        self.nats = NatsServer(
            store_dir=config.state_dir / "nats",
            port=config.nats_port,
            name=f"dockyard-{self.instance}",
            config_file=config.nats_auth.config_file,
        )
        self.nats_child = NatsChild(self.nats, self.log_dir, self.instance, config.logs)
        self.services = [
            ServiceChild(spec, self.log_dir, self.instance, config.logs) for spec in child_specs(config)
        ]
        self.engine = EngineChild(config, self.log_dir, self.instance)
        self.children: list[Child] = [self.nats_child, *self.services, self.engine]
        self.ready_after_s: float | None = None  # seconds from run() to everything ready
        self.stream = config.stream  # fitted to the disk's free space before NATS starts
        self._stopping = asyncio.Event()
        self._prefix: tuple[str, ...] = ()

    async def run(self, on_ready: Callable[[Supervisor], None] | None = None) -> int:
        """Run until a signal; returns the exit status."""
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        os.umask(private.UMASK)  # the state dir is ours alone; children inherit it (dockyard.core.private)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.config.state_dir / "up.lock"):
            self._prefix = die_with_parent()
            stopped = await asyncio.to_thread(stop_leftovers, self.record, STOP_GRACE_S)
            if stopped:
                log.warning("stopped what a previous `dockyard up` left running", **stopped)
            await asyncio.to_thread(self._check_addresses)
            if tightened := await asyncio.to_thread(private.tighten, self.config.state_dir):
                log.info("state directory made private", paths=tightened)  # one made before 0700
            await asyncio.to_thread(self._prepare_access)
            try:
                if await self._start_all():
                    self.ready_after_s = time.monotonic() - began
                    log.info("platform ready", seconds=round(self.ready_after_s, 2), instance=self.instance)
                    if on_ready is not None:
                        on_ready(self)
                    watchers = [asyncio.create_task(self._supervise(child)) for child in self.children]
                    await self._stopping.wait()
                    for watcher in watchers:
                        watcher.cancel()
                    await asyncio.gather(*watchers, return_exceptions=True)
            finally:
                await self._stop_all()
        return 0

    def _check_addresses(self) -> None:
        """Fail with one line when a TCP port or the gateway's socket is taken (see dockyard.local.ports)."""
        require_tcp_free("127.0.0.1", self.config.nats_port, "NATS, --nats-port")
        http_host, _, http_port = self.config.registry_http.rpartition(":")
        require_tcp_free(http_host, int(http_port), "registry HTTP, --registry-listen")
        socket = self.config.gateway_socket
        if socket is not None:
            require_unix_free(socket, "the gateway's, --listen")
        else:
            host, _, port = self.config.gateway_grpc.rpartition(":")
            require_tcp_free(host, int(port), "gateway, --listen")
        docker = self.config.docker_api
        if docker.startswith("unix://"):
            require_unix_free(Path(docker.removeprefix("unix://")), "the Docker API's, beside the gateway's")
        else:
            host, _, port = docker.removeprefix("tcp://").rpartition(":")
            require_tcp_free(host, int(port), "the Docker API's, the gateway's port + 1")

    def _prepare_access(self) -> None:
        """The private sockets directory, NATS's users (fresh secrets each run), the gateway's socket
        directory or its TLS material."""
        self.stream = fit_to_disk(self.config.stream, _free_bytes(self.config.state_dir))
        if self.stream.max_bytes < self.config.stream.max_bytes:
            log.warning(
                "event stream bounded to fit the disk",
                max_bytes=self.stream.max_bytes,
                configured=self.config.stream.max_bytes,
            )
        write_auth(self.config.nats_auth.directory, self.stream)
        if self.config.registry_auth != "none":
            write_registry_auth(
                self.config.registry_logins.directory,
                self.config.registry_http,
                anonymous_pull=self.config.registry_anonymous_pull,
            )
        if adopt_unauthenticated_store(self.nats.store_dir):
            log.info("event stream moved to the authenticated account", store=str(self.nats.store_dir))
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

    def _record_pids(self) -> None:
        running = {c.name: c.identity for c in self.children if c.identity is not None}
        self.record.write(self.instance, running)

    async def _start_all(self) -> bool:
        """Start every child at once and wait until all are ready; False if told to stop meanwhile."""
        self.nats.store_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            await child.start(self._prefix)
        self._record_pids()
        waits = {asyncio.create_task(self._ready(child)): child for child in self.children}
        stop = asyncio.create_task(self._stopping.wait())
        pending: set[asyncio.Task[object]] = {*waits, stop}
        try:
            while waits.keys() & pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return False
                for task in done:
                    if task.exception() is not None:  # the first failure ends start-up
                        raise task.exception()  # type: ignore[misc]
            return True
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _ready(self, child: Child) -> None:
        await child.wait_ready(self.config.ready_timeout_s)
        if child is self.nats_child:
            await self._ensure_stream()
        log.info("service ready", service=child.name, pid=child.process.pid if child.process else None)

    async def _ensure_stream(self) -> None:
        nc = await connect(
            self.nats.url, name="dockyard-up", credentials=self.config.nats_auth.credentials(ADMIN)
        )
        try:
            await ensure_stream(nc, self.stream)
        finally:
            await close_quietly(nc)

    async def _supervise(self, child: Child) -> None:
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
                    "service keeps crashing; leaving it down", service=child.name, log=str(child.log_path)
                )
                return
            delay = min(2 ** (len(child.restarts) - 1), 30)
            log.warning("service exited; restarting", service=child.name, code=code, in_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
                return  # stopping
            await child.start(self._prefix)
            self._record_pids()
            try:
                await self._ready(child)
            except Exception as exc:  # it is watched again: a crash comes back here
                log.warning(
                    "restarted service is not ready", service=child.name, error=str(exc).splitlines()[0]
                )

    async def _stop_all(self) -> None:
        """The Docker API and the gateway first, then the backends together, NATS last (the
        services flush events to it)."""
        await self.engine.stop()
        gateway, *backends = reversed(self.services)
        await gateway.stop()
        await asyncio.gather(*(child.stop() for child in backends))
        await self.nats_child.stop()
        for child in self.children:
            await child.close()
        self.record.clear()
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
