"""Serve gRPC the same way in every service.

``GrpcServer`` adds, around the servicers a service registers:
- the standard ``grpc.health.v1`` service (one status per service name plus the overall ""),
- server reflection, so ``grpcurl -plaintext host:port list`` works,
- ``ErrorInterceptor``: typed core errors become status codes; an unexpected exception is
  logged with its traceback and answered INTERNAL; each call's log lines carry a request id,
- graceful stop: health flips to NOT_SERVING, then in-flight calls get ``grace`` seconds.

Where it listens (``address``, see :func:`grpc_target`): a unix socket (``unix:/path``, the
default everywhere: file permissions decide who may call) or TCP (``host:port``), optionally
with mutual TLS (:class:`dockyard.adapters.grpc.tls.ServerTls`). A unix socket is created with
mode 0600 and then given its ``socket_mode`` and ``socket_group`` before anything is served; a
stale socket file left by a dead process is removed, a live one is never taken over.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dockyard.adapters import unixsock
from dockyard.adapters.grpc.errors import reason_metadata, to_status
from dockyard.core.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.adapters.grpc.tls import ServerTls

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
        if handler.request_deserializer is not None:
            handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method))
        return handler


class _Malformed:
    """A request message that did not parse: handed to the behaviour in place of the message, so
    the caller gets INVALID_ARGUMENT (grpc itself would answer a deserializer's exception with
    INTERNAL/UNKNOWN, as if the server had failed)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def invalid(self) -> InvalidArgument:
        return InvalidArgument(f"malformed request message: {self.error}")


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def wrapper(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            return _Malformed(exc)

    return wrapper


async def _checked(requests: Any) -> Any:
    """A request stream whose malformed message raises InvalidArgument where the servicer reads it."""
    async for request in requests:
        if isinstance(request, _Malformed):
            raise request.invalid()
        yield request


def _request(request: Any, context: grpc.aio.ServicerContext) -> Any:
    if isinstance(request, _Malformed):
        raise request.invalid()
    if hasattr(request, "__aiter__"):  # a client stream
        return _checked(request)
    return request


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    code, message = to_status(exc)
    if isinstance(exc, DockyardError | NotImplementedError):
        log.info("rpc failed", method=method, code=code.name, error=message)
    else:
        log.exception("rpc crashed", method=method)
    await context.abort(code, message, trailing_metadata=reason_metadata(exc))


def _wrap_unary(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with structlog.contextvars.bound_contextvars(request_id=uuid.uuid4().hex[:12], method=method):
            try:
                return await behavior(_request(request, context), context)
            except (grpc.aio.AbortError, _CancelledError):
                raise
            except Exception as exc:
                await _abort(context, method, exc)

    return wrapper


def _wrap_stream(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with structlog.contextvars.bound_contextvars(request_id=uuid.uuid4().hex[:12], method=method):
            try:
                result = behavior(_request(request, context), context)
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


def grpc_target(address: str) -> str:
    """The form grpc takes for an address people write.

    ``unix:///p``, ``unix:/p``, ``unix:p`` (relative) and a bare ``/p`` become ``unix:/abs/p``;
    ``tcp://host:port`` and ``host:port`` become ``host:port``. Raises ValueError otherwise.
    """
    address = address.strip()
    if address.startswith("unix:") or address.startswith("/"):
        path = address.removeprefix("unix:")
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"no socket path in {address!r}")
        return f"unix:{os.path.abspath(path)}"
    hostport = address.removeprefix("tcp://")
    if "://" in hostport:
        raise ValueError(f"unsupported address {address!r}: use unix:///path or tcp://host:port")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port, tcp://host:port or unix:///path")
    return hostport


def unix_path(address: str) -> Path | None:
    """The socket path of a unix address, None for TCP."""
    target = grpc_target(address)
    return Path(target.removeprefix("unix:")) if target.startswith("unix:") else None


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
        tls: ServerTls | None = None,
        socket_mode: int = 0o600,
        socket_group: str | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.socket_mode = socket_mode
        self.socket_group = socket_group
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
        """Bind and start serving; returns the bound port (useful with ``:0``; 1 for a unix socket)."""
        reflection.enable_server_reflection(self._names, self._server)
        try:
            target = grpc_target(self.address)
        except ValueError as exc:
            raise OSError(str(exc)) from None
        path = unix_path(target)
        if path is not None:
            unixsock.claim(path)
        old_umask = os.umask(0o177) if path is not None else None  # born 0600, widened below
        try:
            if self.tls is not None:
                self.port = self._server.add_secure_port(target, self.tls.server_credentials())
            else:
                self.port = self._server.add_insecure_port(target)
        except RuntimeError:  # grpc's way of saying the address is taken or invalid
            self.port = 0
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {self.address} (in use, or not a local address)")
        if path is not None:  # before serving: nobody outside mode/group ever reaches it
            unixsock.open_to(path, self.socket_mode, self.socket_group)
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
