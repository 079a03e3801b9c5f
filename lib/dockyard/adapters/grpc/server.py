"""Serve gRPC the same way in every service.

``GrpcServer`` adds, around the servicers a service registers:
- the standard ``grpc.health.v1`` service (one status per service name plus the overall ""),
- server reflection, so ``grpcurl -plaintext host:port list`` works,
- ``ErrorInterceptor``: typed core errors become status codes; an unexpected exception is
  logged with its traceback and answered INTERNAL; each call's log lines carry a request id,
- graceful stop: health flips to NOT_SERVING, then in-flight calls get ``grace`` seconds.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dockyard.adapters.grpc.errors import to_status
from dockyard.core.errors import DockyardError

log = structlog.get_logger(__name__)

AddServicer = Callable[[Any, grpc.aio.Server], None]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Map exceptions to statuses once, for every method of every servicer."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method))
        return handler


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    code, message = to_status(exc)
    if isinstance(exc, DockyardError | NotImplementedError):
        log.info("rpc failed", method=method, code=code.name, error=message)
    else:
        log.exception("rpc crashed", method=method)
    await context.abort(code, message)


def _wrap_unary(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with structlog.contextvars.bound_contextvars(request_id=uuid.uuid4().hex[:12], method=method):
            try:
                return await behavior(request, context)
            except (grpc.aio.AbortError, _CancelledError):
                raise
            except Exception as exc:
                await _abort(context, method, exc)

    return wrapper


def _wrap_stream(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with structlog.contextvars.bound_contextvars(request_id=uuid.uuid4().hex[:12], method=method):
            try:
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:  # a coroutine that writes with context.write()
                    await result
            except (grpc.aio.AbortError, _CancelledError):
                raise
            except Exception as exc:
                await _abort(context, method, exc)

    return wrapper


try:  # asyncio.CancelledError is a BaseException, listed for clarity
    from asyncio import CancelledError as _CancelledError
except ImportError:  # pragma: no cover
    _CancelledError = BaseException  # type: ignore[misc, assignment]


class GrpcServer:
    """One service's gRPC server: register servicers, ``start``, ``stop``.

    ``services`` pairs each ``add_XServicer_to_server`` function with its servicer and the
    full service name (for health and reflection), e.g. ``(add_RegistryAdminServicer_to_server,
    servicer, "dockyard.api.registry.v1.RegistryAdmin")``.
    """

    def __init__(
        self,
        address: str,
        services: Iterable[tuple[AddServicer, Any, str]],
        *,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.address = address
        self._server = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        for add, servicer, name in services:
            self.add_servicer(add, servicer, name)
        self.port = 0

    def add_servicer(self, add: AddServicer, servicer: Any, name: str) -> None:
        """Register ``servicer`` with its generated ``add_…_to_server``; before ``start``."""
        add(servicer, self._server)
        self._names.append(name)

    def add_generic_handler(self, handler: grpc.GenericRpcHandler, name: str) -> None:
        """Serve ``name`` through a generic handler (the gateway's forwarding); before ``start``."""
        self._server.add_generic_rpc_handlers((handler,))
        self._names.append(name)

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (useful with ``:0``)."""
        reflection.enable_server_reflection(self._names, self._server)
        try:
            self.port = self._server.add_insecure_port(self.address)
        except RuntimeError:  # grpc's way of saying the address is taken or invalid
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {self.address} (in use, or not a local address)")
        await self._server.start()
        for name in ["", *self._names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("grpc serving", address=self.address, port=self.port)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls (health NOT_SERVING first), give in-flight calls ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
