"""Channels from one service to another.

gRPC's default reconnect backoff grows to two minutes: a channel that tried a peer while it was
starting, or restarting under ``dockyard up``, would fail every call fast for that long after the
peer came back. Between our own services the peer is local and cheap to retry, so the backoff
stays under a second, and :func:`wait_ready` lets a caller wait out a start instead of failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc

from dockyard.adapters.grpc.server import grpc_target
from dockyard.core.errors import Unavailable

RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def service_channel(
    address: str,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to the service at ``address`` (``unix:/path`` or ``host:port``)."""
    target = grpc_target(address)
    opts = [*RECONNECT, *options]
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, opts)
    return grpc.aio.insecure_channel(target, opts)


async def wait_ready(channel: grpc.aio.Channel, name: str, timeout: float) -> None:
    """Return once ``channel`` is connected; Unavailable naming ``name`` after ``timeout`` s."""
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout)
    except TimeoutError:
        raise Unavailable(f"{name} did not answer in {timeout:g} s") from None
