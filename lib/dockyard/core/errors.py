"""Typed errors of the core, mapped once per boundary.

The core raises these and nothing transport-shaped. Each boundary maps them once:
``dockyard.adapters.grpc.errors`` to gRPC status codes, the registry's HTTP layer to OCI
error codes, the CLI to one readable line. ``code`` is the stable, machine-readable name of
the kind; ``reason`` (one of :class:`Reason`, or "") says which case of it, so that a caller
deciding what to do next — pull the missing image, exit 127 — never matches message text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why, where a caller acts on it; travels beside the message (gRPC: ``REASON_KEY``)."""

    NO_SUCH_IMAGE = "NO_SUCH_IMAGE"
    NO_SUCH_CONTAINER = "NO_SUCH_CONTAINER"
    COMMAND_NOT_FOUND = "COMMAND_NOT_FOUND"  # docker run's 127
    COMMAND_NOT_EXECUTABLE = "COMMAND_NOT_EXECUTABLE"  # docker run's 126
    PORT_TAKEN = "PORT_TAKEN"


class DockyardError(Exception):
    """Base of every error the core raises on purpose.

    ``message`` is safe to show a user; ``reason`` (a :class:`Reason` value, or "") is the case a
    caller may act on; ``detail`` carries structured context (ids, digests).
    """

    code = "UNKNOWN"

    def __init__(self, message: str, *, reason: str = "", **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DockyardError):
    """The caller sent something malformed: a bad name, digest, flag or document."""

    code = "INVALID_ARGUMENT"


class NotFound(DockyardError):
    """The named thing does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(DockyardError):
    """Creating something whose name is taken."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(DockyardError):
    """The system is not in a state where this can be done (e.g. removing a running container)."""

    code = "FAILED_PRECONDITION"


class OutOfRange(DockyardError):
    """An offset or range the target does not cover (e.g. a chunk out of order)."""

    code = "OUT_OF_RANGE"


class Unauthenticated(DockyardError):
    """No or bad credentials."""

    code = "UNAUTHENTICATED"


class PermissionDenied(DockyardError):
    """Credentials are good but do not allow this."""

    code = "PERMISSION_DENIED"


class ResourceExhausted(DockyardError):
    """A limit was hit: size, rate, quota."""

    code = "RESOURCE_EXHAUSTED"


class StorageFull(ResourceExhausted):
    """The disk (or quota) under a store is full: the server's condition, not the caller's mistake.

    Writes fail until space is freed; reads keep working. Retrying later may succeed.
    """

    code = "RESOURCE_EXHAUSTED"


class Unavailable(DockyardError):
    """A dependency (a backend service, NATS, a node) cannot be reached right now; retrying may work."""

    code = "UNAVAILABLE"


class Unimplemented(DockyardError):
    """The operation exists in the contract but this build does not do it yet."""

    code = "UNIMPLEMENTED"


class Internal(DockyardError):
    """A bug or a broken invariant; never the caller's fault."""

    code = "INTERNAL"
