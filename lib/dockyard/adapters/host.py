"""What every service process runs around its own core.

A ``ServiceHost`` owns: the service's outbox and the drainer that moves it to JetStream, a
``GrpcServer`` answering System.Info + health + reflection + the service's own servicers,
any extra ``Component`` (the registry's HTTP server), and the signal handling that stops it
all in order on SIGTERM or Ctrl-C: health NOT_SERVING and in-flight calls drain → components
stop → last events flushed (briefly; the rest stay in the outbox for the next start).

State under ``--state-dir``::

    <state-dir>/
      outbox/          events not yet acknowledged by JetStream (see dockyard.core.outbox)
      ...              whatever the service keeps (registry storage, runtime state)

gRPC listens on a unix socket by default, next to the state directory, where ``dockyard up``
puts it too, so a service run alone and one run by ``up`` are found at the same place::

    <state-dir>/../sockets/<service>.sock     the directory 0700, the socket 0600

(the gateway's is public: see :func:`public_socket`). ``--grpc-listen host:port`` serves TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from dockyard.adapters.grpc import system
from dockyard.adapters.grpc.server import GrpcServer
from dockyard.adapters.grpc.tls import ServerTls
from dockyard.adapters.nats.auth import NatsCredentials
from dockyard.adapters.nats.bus import OutboxDrainer, StreamSettings
from dockyard.core.errors import DockyardError
from dockyard.core.events import Subject, new_event
from dockyard.core.outbox import Outbox, OutboxPublisher
from dockyard.core.service import ServiceInfo, event_source

log = structlog.get_logger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
SYSTEM_RUN_DIR = Path("/run/dockyard")
SOCKET_NAME = "dockyard.sock"
PLATFORM_GROUP = "dockyard"


def run_dir() -> Path:
    """Where root's platform puts its public socket: /run/dockyard (``$DOCKYARD_RUN_DIR``)."""
    return Path(os.environ.get("DOCKYARD_RUN_DIR") or SYSTEM_RUN_DIR)


def platform_group() -> str:
    """The group whose members may use the platform's socket (``$DOCKYARD_GROUP``, default dockyard)."""
    return os.environ.get("DOCKYARD_GROUP") or PLATFORM_GROUP


def public_socket(state_dir: Path, *, root: bool | None = None) -> Path:
    """The gateway's default socket: /run/dockyard/dockyard.sock for a platform root starts,
    else ``$XDG_RUNTIME_DIR/dockyard/dockyard.sock``, else ``<state_dir>/dockyard.sock``."""
    if root is None:
        root = os.geteuid() == 0
    if root:
        return run_dir() / SOCKET_NAME
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "dockyard" / SOCKET_NAME
    return state_dir / SOCKET_NAME


def backend_socket(platform_dir: Path, service: str) -> str:
    """A backend's private socket address under a platform state directory."""
    return f"unix:{platform_dir / 'sockets' / f'{service}.sock'}"


class Component(Protocol):
    """Something with a life inside a service process (an HTTP server, a sweeper)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Flags every service shares. Each has an env var: ``DOCKYARD_<SERVICE>_<FLAG>``."""

    service: str
    grpc_listen: str
    state_dir: Path
    nats_url: str = DEFAULT_NATS_URL
    node: str = field(default_factory=socket.gethostname)
    stream: StreamSettings = field(default_factory=StreamSettings)
    tls: ServerTls | None = None  # mutual TLS on a TCP address
    socket_mode: int = 0o600  # of a unix socket
    socket_group: str | None = None  # group of a unix socket (None: the process's)
    nats_credentials: Path | None = None  # a 0600 file (adapters.nats.auth); None: no authentication

    @property
    def source(self) -> str:
        return event_source(self.service, self.node)

    @classmethod
    def from_args(cls, service: str, args: argparse.Namespace) -> HostConfig:
        state_dir = Path(args.state_dir).resolve()
        return cls(
            service=service,
            grpc_listen=args.grpc_listen or backend_socket(state_dir.parent, service),
            state_dir=state_dir,
            nats_url=args.nats_url,
            nats_credentials=Path(args.nats_credentials) if args.nats_credentials else None,
            node=args.node,
            stream=StreamSettings.from_env(),
        )


def add_host_flags(parser: argparse.ArgumentParser, service: str, grpc_port: int) -> None:
    """Add --grpc-listen, --state-dir, --nats-url, --nats-credentials, --node, each defaulting from env.

    ``grpc_port`` is the service's conventional TCP port, shown in --help as the TCP example.
    """
    prefix = f"DOCKYARD_{service.upper()}_"
    home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")

    def env(name: str, default: str) -> str:
        return os.environ.get(prefix + name, os.environ.get(f"DOCKYARD_{name}", default))

    group = parser.add_argument_group("service")
    group.add_argument(
        "--grpc-listen",
        default=env("GRPC_LISTEN", ""),
        help=f"gRPC address: unix:/path or host:port (e.g. 127.0.0.1:{grpc_port}) [{prefix}GRPC_LISTEN, "
        f"default unix:<state-dir>/../sockets/{service}.sock]",
    )
    group.add_argument(
        "--state-dir",
        default=env("STATE_DIR", os.path.join(home, "dockyard", service)),
        help=f"where this service keeps its state [{prefix}STATE_DIR, "
        f"default ~/.local/share/dockyard/{service}]",
    )
    group.add_argument(
        "--nats-url",
        default=env("NATS_URL", DEFAULT_NATS_URL),
        help=f"NATS server for events [{prefix}NATS_URL or DOCKYARD_NATS_URL, default {DEFAULT_NATS_URL}]",
    )
    group.add_argument(
        "--nats-credentials",
        default=env("NATS_CREDENTIALS", ""),
        metavar="FILE",
        help=f"this service's NATS user and password, a JSON file only its user reads (`dockyard up` "
        f"writes one per service) [{prefix}NATS_CREDENTIALS, default none: no authentication]",
    )
    group.add_argument(
        "--node",
        default=env("NODE", socket.gethostname()),
        help=f"node name in events and info [{prefix}NODE or DOCKYARD_NODE, default the hostname]",
    )


def run_service(service: str, serve: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run ``serve`` (which builds and runs a ServiceHost inside the loop) to completion.

    A port that cannot be bound, a directory that cannot be written or a refused configuration
    is one line on stderr and exit status 1, not a traceback.
    """
    from dockyard.core.private import UMASK

    os.umask(UMASK)  # what it (and conmon, runc, …) writes in the state dir: 0700 dirs, 0600 files
    try:
        asyncio.run(serve())
    except (OSError, DockyardError) as exc:
        print(f"dockyard-{service}: {exc}", file=sys.stderr)
        return 1
    return 0


class ServiceHost:
    """Run one service: gRPC + events + components, until a signal."""

    def __init__(
        self,
        config: HostConfig,
        info: Callable[[], ServiceInfo],
        services: Iterable[tuple[Any, Any, str]] = (),
        components: Iterable[Component] = (),
    ) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.state_dir / "outbox")
        self.publisher = OutboxPublisher(self.outbox)
        self.nats_credentials = (
            NatsCredentials.load(config.nats_credentials) if config.nats_credentials is not None else None
        )
        self.drainer = OutboxDrainer(
            self.outbox,
            config.nats_url,
            config.stream,
            name=f"dockyard-{config.service}",
            credentials=self.nats_credentials,
        )
        self.server = GrpcServer(
            config.grpc_listen,
            [system.registration(info), *services],
            tls=config.tls,
            socket_mode=config.socket_mode,
            socket_group=config.socket_group,
        )
        self.components = list(components)
        self._stop = asyncio.Event()

    def add_component(self, component: Component) -> None:
        """Run ``component`` with the service (started before gRPC serves, stopped after); before ``run``."""
        self.components.append(component)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``request_stop``), then stop in order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        structlog.contextvars.bind_contextvars(node=self.config.node)
        drain = asyncio.create_task(self.drainer.run(), name="outbox-drainer")
        started: list[Component] = []
        try:
            for component in self.components:
                await component.start()
                started.append(component)
            await self.server.start()
            self.publisher.publish(
                new_event(
                    Subject.SERVICE_STARTED, self.config.source, self.config.service, {"pid": os.getpid()}
                )
            )
            log.info("service started", grpc=self.config.grpc_listen, state_dir=str(self.config.state_dir))
            await self._stop.wait()
            log.info("service stopping")
            self.publisher.publish(
                new_event(Subject.SERVICE_STOPPING, self.config.source, self.config.service)
            )
            await self.server.stop(grace=5.0)
        finally:
            for component in reversed(started):
                await component.stop()
            if self.drainer.connected:  # else they wait on disk for the next start
                await self.drainer.flush(timeout=2.0)
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
            log.info("service stopped", events_pending=len(self.outbox))
