"""Core errors <-> gRPC status codes: the one mapping, both directions.

Servers get it through ``ErrorInterceptor`` (a handler just raises ``NotFound``); clients turn a
failed call back into the same typed error with ``to_native`` so "local and remote look the same".
An error's ``reason`` travels in the trailing metadata under ``REASON_KEY``.
"""

from __future__ import annotations

import grpc
import structlog

from dockyard.core import errors
from dockyard.core.fsutil import full_disk_error, storage_full

_TO_GRPC: dict[type[errors.DockyardError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}
_FROM_GRPC: dict[grpc.StatusCode, type[errors.DockyardError]] = {v: k for k, v in _TO_GRPC.items()}
_FROM_GRPC[grpc.StatusCode.DEADLINE_EXCEEDED] = errors.Unavailable

log = structlog.get_logger(__name__)

REASON_KEY = "dockyard-reason"


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client should see for ``exc``.

    Typed errors keep their message; NotImplementedError (raised by the generated base
    servicers) is UNIMPLEMENTED; anything else is a bug and becomes INTERNAL with a generic
    message (the traceback goes to the log, never to the client). A write that ran out of space
    (ENOSPC/EDQUOT, however deep it was wrapped) is RESOURCE_EXHAUSTED naming the full filesystem.
    """
    full = None if isinstance(exc, errors.StorageFull) else full_disk_error(exc)
    if full is not None:
        exc = storage_full(full)
    if isinstance(exc, NotImplementedError):  # what the generated base servicers raise
        return grpc.StatusCode.UNIMPLEMENTED, "not implemented yet"
    for cls in type(exc).__mro__:
        code = _TO_GRPC.get(cls)
        if code is not None:
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error; see the service log"


def reason_metadata(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that carries ``exc``'s reason (none without one)."""
    reason = getattr(exc, "reason", "")
    return ((REASON_KEY, reason),) if isinstance(exc, errors.DockyardError) and reason else ()


def reason_of(exc: grpc.RpcError) -> str:
    """The reason a failed call's trailing metadata carries, or ""."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == REASON_KEY:
            return value if isinstance(value, str) else value.decode()
    return ""


def to_native(exc: grpc.RpcError) -> errors.DockyardError:
    """Turn a failed call into the core's typed error, keeping the server's message and reason."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _FROM_GRPC.get(code, errors.Internal)
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"service unavailable: {details}"
    return cls(details or code.name.lower(), reason=reason_of(exc))
