"""The gateway's backends and the forwarding of their APIs.

The gateway serves the same gRPC services the backends do (local and remote look the same):
a call to ``dockyard.api.images.v1.Images/List`` on the gateway is forwarded, bytes in and
bytes out, to the runtime that owns images. Forwarding keeps each method's streaming shape,
passes metadata (auth, request ids) and the deadline through, and returns the backend's
status unchanged; a backend that cannot be reached is UNAVAILABLE with its name in the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dockyard.adapters.grpc.channel import service_channel
from dockyard.adapters.grpc.convert import info_from_pb
from dockyard.api.builds.v1 import builds_pb2
from dockyard.api.containers.v1 import containers_pb2
from dockyard.api.images.v1 import images_pb2
from dockyard.api.networks.v1 import networks_pb2  # networks
from dockyard.api.registry.v1 import registry_pb2
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.api.volumes.v1 import volumes_pb2
from dockyard.core.service import ServiceInfo, ServiceState

log = structlog.get_logger(__name__)

# Which backend owns which public service.
ROUTES: Mapping[str, ServiceDescriptor] = {
    "registry": registry_pb2.DESCRIPTOR.services_by_name["RegistryAdmin"],
    "runtime:images": images_pb2.DESCRIPTOR.services_by_name["Images"],
    "runtime:containers": containers_pb2.DESCRIPTOR.services_by_name["Containers"],
    "runtime:networks": networks_pb2.DESCRIPTOR.services_by_name["Networks"],  # networks
    "runtime:volumes": volumes_pb2.DESCRIPTOR.services_by_name["Volumes"],
    "builder": builds_pb2.DESCRIPTOR.services_by_name["Builds"],
}


@dataclass(frozen=True, slots=True)
class BackendStatus:
    name: str
    address: str
    health: str
    info: ServiceInfo


class Backend:
    """One backend service: a channel, its health and its Info, each call bounded by a deadline.

    ``address`` is ``unix:/path`` (a private socket only the platform's user can open: how
    ``dockyard up`` runs them) or ``host:port``; the channel carries no credentials.
    """

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.channel = service_channel(address)

    async def status(self, timeout: float = 1.0) -> BackendStatus:
        """Health and Info; never raises: an unreachable backend is reported as such."""
        try:
            health, info = await asyncio.gather(
                health_pb2_grpc.HealthStub(self.channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout
                ),
                system_pb2_grpc.SystemStub(self.channel).Info(system_pb2.InfoRequest(), timeout=timeout),
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
            return BackendStatus(
                self.name,
                self.address,
                "UNKNOWN",
                ServiceInfo(
                    self.name,
                    ServiceState.UNREACHABLE,
                    f"{code.name.lower()} at {self.address}",
                    version="",
                    node="",
                ),
            )
        return BackendStatus(
            self.name,
            self.address,
            health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
            info_from_pb(info),
        )

    async def close(self) -> None:
        await self.channel.close()


def _identity(raw: bytes) -> bytes:
    return raw


class ForwardingHandler(grpc.GenericRpcHandler):
    """Forward every method of ``service`` to ``backend``, untouched."""

    def __init__(self, service: ServiceDescriptor, backend: Backend) -> None:
        self._backend = backend
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            self._methods[path] = self._handler(path, method.client_streaming, method.server_streaming)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._methods.get(handler_call_details.method)

    def _handler(self, path: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
        channel, name = self._backend.channel, self._backend.name
        kwargs: dict[str, Callable[[bytes], bytes]] = {
            "request_serializer": _identity,
            "response_deserializer": _identity,
        }

        def call_options(context: grpc.aio.ServicerContext) -> dict[str, Any]:
            remaining = context.time_remaining()
            return {
                "metadata": tuple((m.key, m.value) for m in context.invocation_metadata() or ()),
                "timeout": remaining,
            }

        async def relay_error(context: grpc.aio.ServicerContext, exc: grpc.aio.AioRpcError) -> None:
            details = exc.details() or ""
            # With the channel up, UNAVAILABLE is the backend's own answer (say, a registry it
            # talks to is down): relayed as is. Only a channel that is not up means the backend.
            up = channel.get_state() == grpc.ChannelConnectivity.READY
            if exc.code() == grpc.StatusCode.UNAVAILABLE and not up:
                details = f"{name} unreachable at {self._backend.address}: {details}"
            await context.abort(exc.code(), details, trailing_metadata=tuple(exc.trailing_metadata() or ()))

        if not client_streaming and not server_streaming:

            async def unary_unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                try:
                    return await channel.unary_unary(path, **kwargs)(request, **call_options(context))
                except grpc.aio.AioRpcError as exc:
                    await relay_error(context, exc)
                    raise

            return grpc.unary_unary_rpc_method_handler(unary_unary, _identity, _identity)

        if not client_streaming:

            async def unary_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                call = channel.unary_stream(path, **kwargs)(request, **call_options(context))
                try:
                    async for item in call:
                        yield item
                except grpc.aio.AioRpcError as exc:
                    await relay_error(context, exc)
                finally:
                    call.cancel()  # a client gone: the backend's call ends too

            return grpc.unary_stream_rpc_method_handler(unary_stream, _identity, _identity)

        async def pump(requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            async for item in requests:
                yield item

        if not server_streaming:

            async def stream_unary(
                requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
            ) -> bytes:
                try:
                    return await channel.stream_unary(path, **kwargs)(pump(requests), **call_options(context))
                except grpc.aio.AioRpcError as exc:
                    await relay_error(context, exc)
                    raise

            return grpc.stream_unary_rpc_method_handler(stream_unary, _identity, _identity)

        async def stream_stream(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            call = channel.stream_stream(path, **kwargs)(pump(requests), **call_options(context))
            try:
                async for item in call:
                    yield item
            except grpc.aio.AioRpcError as exc:
                await relay_error(context, exc)
            finally:
                call.cancel()  # a client gone: the backend's call ends too (a build stops, issue 15)

        return grpc.stream_stream_rpc_method_handler(stream_stream, _identity, _identity)
