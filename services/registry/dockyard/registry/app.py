"""Composition root of the registry: storage → core → HTTP (OCI Distribution) + gRPC admin, one process.

The ServiceHost supplies what every service has (gRPC with health/reflection/System.Info, the
event outbox drained to JetStream, ordered shutdown); this module adds the registry's parts.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace

import structlog
from aiohttp import web

from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.api.registry.v1 import registry_pb2, registry_pb2_grpc
from dockyard.core.service import ServiceInfo, ServiceState
from dockyard.registry.auth import Authorizer
from dockyard.registry.config import RegistryConfig
from dockyard.registry.connections import (
    ConnectionGuard,
    RateLimitedExceptionHandler,
    accept_backlog,
    default_connection_limit,
    raise_nofile_limit,
)
from dockyard.registry.http import make_http_app
from dockyard.registry.registry import Registry
from dockyard.registry.servicer import RegistryAdminServicer
from dockyard.registry.storage import FilesystemDriver

log = structlog.get_logger("dockyard.registry.app")


class HttpServer:
    """The OCI Distribution HTTP API as a ServiceHost component, behind a ConnectionGuard.

    The listening socket is made here (not by a ``TCPSite``) so that every accepted connection
    goes through the guard: a cap with eviction of idle connections, idle/header timeouts (see
    ``dockyard.registry.connections``). aiohttp's own keep-alive timeout is set to the same value.
    """

    def __init__(
        self, app: web.Application, config: RegistryConfig, guard: ConnectionGuard, backlog: int = 1024
    ) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=config.idle_timeout
        )
        self._config = config
        self._guard = guard
        self._backlog = backlog
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Errors the loop reports (a failed accept, say) once per interval, not once per attempt.
        loop.set_exception_handler(RateLimitedExceptionHandler())
        await self._runner.setup()
        assert self._runner.server is not None
        self._guard.bind(self._runner.server)
        self._server = await loop.create_server(
            self._guard,
            self._config.host,
            self._config.port,
            ssl=ssl_context(self._config),
            backlog=self._backlog,
            reuse_address=True,
        )
        self._guard.start()
        log.info("http serving", port=self._config.port, backlog=self._backlog, **self._guard.stats())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._guard.stop()
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

    nofile = raise_nofile_limit()
    guard = ConnectionGuard(config.max_connections or default_connection_limit(nofile), config.idle_timeout)

    def info() -> ServiceInfo:
        details = {
            "http": f"{scheme}://{config.host}:{config.port}",
            "storage": str(config.root),
            "auth": str(config.auth_mode),
            "anonymous": ",".join(sorted(authorizer.anonymous)) or "none",
            "events_pending": str(len(host.outbox)),
            "events_dead_letter": str(host.outbox.dead_count()),
            "connections": str(guard.stats()["open"]),
            "max_connections": str(guard.limit),
        }
        try:
            space = storage.space()
            details["storage_free_bytes"] = str(space.free)
            details["storage_total_bytes"] = str(space.total)
        except OSError as exc:
            details["storage_free_bytes"] = f"unknown ({exc.strerror})"
        return replace(started, details=details)

    authorizer = Authorizer(config)
    host = ServiceHost(host_config, info)
    storage = FilesystemDriver(config.root)
    registry = Registry(storage, host.publisher, config)
    host.server.add_servicer(
        registry_pb2_grpc.add_RegistryAdminServicer_to_server,
        RegistryAdminServicer(registry, authorizer),
        registry_pb2.DESCRIPTOR.services_by_name["RegistryAdmin"].full_name,
    )
    app = make_http_app(registry, authorizer, guard)
    host.add_component(HttpServer(app, config, guard, accept_backlog(nofile)))
    return host, registry
