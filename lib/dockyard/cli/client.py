"""The CLI's connection to the gateway."""

from __future__ import annotations

import grpc


def channel(host: str) -> grpc.Channel:
    """A blocking channel to the gateway at ``host`` (host:port)."""
    return grpc.insecure_channel(host, options=[("grpc.enable_retries", 1)])
