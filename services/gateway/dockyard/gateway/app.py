"""Composition root of the gateway: backends, forwarding, Platform, Events, one ServiceHost."""

from __future__ import annotations

from dataclasses import dataclass, replace

from dockyard.adapters.grpc.server import unix_path
from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.adapters.nats.auth import NatsCredentials
from dockyard.api.events.v1 import events_pb2, events_pb2_grpc
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.core.errors import FailedPrecondition
from dockyard.core.service import ServiceInfo, ServiceState
from dockyard.gateway.backends import ROUTES, Backend, ForwardingHandler
from dockyard.gateway.events import EventSource
from dockyard.gateway.servicer import EventsServicer, PlatformServicer


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: HostConfig
    registry: str
    runtime: str
    builder: str
    docker_api: str = ""  # the Engine API's address, when `dockyard up` runs one


def build(config: GatewayConfig) -> tuple[ServiceHost, list[Backend], EventSource]:
    """Wire the gateway. Must run inside the event loop (gRPC aio objects bind to it).

    Refuses a TCP address without mutual TLS: the gateway hands out containers.
    """
    if unix_path(config.host.grpc_listen) is None and config.host.tls is None:
        raise FailedPrecondition(f"refusing to serve {config.host.grpc_listen} without mutual TLS")
    backends = [
        Backend("registry", config.registry),
        Backend("runtime", config.runtime),
        Backend("builder", config.builder),
    ]
    by_name = {b.name: b for b in backends}
    creds = config.host.nats_credentials
    events = EventSource(
        config.host.nats_url, config.host.stream, NatsCredentials.load(creds) if creds is not None else None
    )
    started = ServiceInfo("gateway", ServiceState.SERVING, node=config.host.node)

    def info() -> ServiceInfo:
        return replace(
            started,
            details={
                "grpc": config.host.grpc_listen,
                "registry": config.registry,
                "runtime": config.runtime,
                "builder": config.builder,
                "nats": config.host.nats_url,
                **({"docker": config.docker_api} if config.docker_api else {}),
                "events_pending": str(len(host.outbox)),
                "events_dead_letter": str(host.outbox.dead_count()),
            },
        )

    platform = PlatformServicer(info, backends, events, lambda: host.drainer.connected)
    host = ServiceHost(
        config.host,
        info,
        [
            (
                system_pb2_grpc.add_PlatformServicer_to_server,
                platform,
                system_pb2.DESCRIPTOR.services_by_name["Platform"].full_name,
            ),
            (
                events_pb2_grpc.add_EventsServicer_to_server,
                EventsServicer(events),
                events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
            ),
        ],
    )
    for route, service in ROUTES.items():
        backend = by_name[route.split(":")[0]]
        host.server.add_generic_handler(ForwardingHandler(service, backend), service.full_name)
    return host, backends, events
