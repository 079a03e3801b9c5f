"""Calls on the gateway, with the platform's typed errors instead of gRPC's.

A failed call raises the core's error (``NotFound``, ``InvalidArgument``…) with the server's
message and its ``reason`` (:class:`dockyard.core.errors.Reason`): callers act on the reason,
never on the text. A streaming call is a :class:`Stream`, which can be cancelled from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import grpc

from dockyard.adapters.grpc.errors import to_native
from dockyard.core.errors import DockyardError, Reason

T = TypeVar("T")


def unary(method: Callable[..., Any], request: Any, **kwargs: Any) -> Any:
    """``method(request)``; a failure is the core's typed error."""
    try:
        return method(request, **kwargs)
    except grpc.RpcError as exc:
        raise to_native(exc) from None


class Stream(Generic[T]):
    """The messages of a server-streaming call, each turned into a ``T``; ``cancel`` ends it (the
    iterator then stops, as it does when the server ends the stream)."""

    def __init__(self, call: Any, convert: Callable[[Any], T]) -> None:
        self._call = call
        self._convert = convert
        self._cancelled = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self._convert(next(self._call))
        except grpc.RpcError as exc:
            if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise to_native(exc) from None

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def native(exc: BaseException) -> BaseException:
    """A raw gRPC failure (of a call the library does not wrap, like the CLI's terminal attach)
    as the platform's typed error; anything else as it is."""
    return to_native(exc) if isinstance(exc, grpc.RpcError) else exc


def exit_code(error: BaseException) -> int:
    """docker run's status when the platform failed before the container's command ran: 127 when
    the command is not found, 126 when it cannot be executed, 125 otherwise."""
    reason = error.reason if isinstance(error, DockyardError) else ""
    if reason == Reason.COMMAND_NOT_FOUND:
        return 127
    if reason == Reason.COMMAND_NOT_EXECUTABLE:
        return 126
    return 125
