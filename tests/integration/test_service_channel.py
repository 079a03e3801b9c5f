"""Channels between services wait out a peer that is starting (dockyard.adapters.grpc.channel).

A builder that starts before its runtime, or outlives the runtime's restart, first meets a socket
that is not there; its next call must not fail just because an earlier one did.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dockyard.adapters.grpc.channel import service_channel, wait_ready
from dockyard.core.errors import Unavailable


async def _serve(path: Path) -> grpc.aio.Server:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    return server


async def test_a_peer_that_is_not_there_is_unavailable_by_name(tmp_path: Path) -> None:
    async with service_channel(f"unix:{tmp_path / 'runtime.sock'}") as channel:
        with pytest.raises(Unavailable, match=r"the runtime did not answer in 0\.3 s"):
            await wait_ready(channel, "the runtime", 0.3)


async def test_a_peer_that_comes_up_after_a_failed_call_is_waited_for(tmp_path: Path) -> None:
    sock = tmp_path / "runtime.sock"
    async with service_channel(f"unix:{sock}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await check(health_pb2.HealthCheckRequest(), timeout=5)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        server = await _serve(sock)
        try:
            await wait_ready(channel, "the runtime", 20)
            reply = await check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await server.stop(None)
