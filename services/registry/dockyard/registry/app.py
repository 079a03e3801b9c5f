"""Composition root of the registry: storage → core → HTTP (OCI Distribution) + gRPC admin, one process.

The ServiceHost supplies what every service has (gRPC with health/reflection/System.Info, the
event outbox drained to JetStream, ordered shutdown); this module adds the registry's parts.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

from aiohttp import web

from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.api.registry.v1 import registry_pb2, registry_pb2_grpc
from dockyard.core.service import ServiceInfo, ServiceState
from dockyard.registry.auth import Authorizer
from dockyard.registry.config import RegistryConfig
from dockyard.registry.http import make_http_app
from dockyard.registry.registry import Registry
from dockyard.registry.servicer import RegistryAdminServicer
from dockyard.registry.storage import FilesystemDriver


class HttpServer:
    """The OCI Distribution HTTP API as a ServiceHost component."""

    def __init__(self, app: web.Application, config: RegistryConfig) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._config = config

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self._config.host,
            self._config.port,
            ssl_context=ssl_context(self._config),
            backlog=1024,
        )
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()


def ssl_context(config: RegistryConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return ctx


def build(config: RegistryConfig, host_config: HostConfig) -> tuple[ServiceHost, Registry]:
    """Wire the registry. Must run inside the event loop (gRPC aio objects bind to it)."""
    config = replace(config, source=host_config.source)
    started = ServiceInfo("registry", ServiceState.SERVING, node=host_config.node)
    scheme = "https" if config.tls else "http"

    def info() -> ServiceInfo:
        return replace(
            started,
            details={
                "http": f"{scheme}://{config.host}:{config.port}",
                "storage": str(config.root),
                "auth": str(config.auth_mode),
                "events_pending": str(len(host.outbox)),
            },
        )

    host = ServiceHost(host_config, info)
    registry = Registry(FilesystemDriver(config.root), host.publisher, config)
    host.server.add_servicer(
        registry_pb2_grpc.add_RegistryAdminServicer_to_server,
        RegistryAdminServicer(registry),
        registry_pb2.DESCRIPTOR.services_by_name["RegistryAdmin"].full_name,
    )
    host.add_component(HttpServer(make_http_app(registry, Authorizer(config)), config))
    return host, registry
