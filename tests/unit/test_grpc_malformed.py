"""A request message that does not parse is the caller's mistake: INVALID_ARGUMENT, not INTERNAL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from dockyard.adapters.grpc.server import ErrorInterceptor
from dockyard.api.images.v1 import images_pb2 as pb

MALFORMED = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, length past the end


async def _serve(tmp_path: Path, calls: list[Any]) -> tuple[grpc.aio.Server, str]:
    async def unary(request: Any, context: Any) -> Any:
        calls.append(request)
        return pb.ListImagesResponse()

    async def client_stream(requests: Any, context: Any) -> Any:
        async for request in requests:
            calls.append(request)
        return pb.ListImagesResponse()

    handlers = {
        "List": grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=pb.ListImagesRequest.FromString,
            response_serializer=pb.ListImagesResponse.SerializeToString,
        ),
        "Upload": grpc.stream_unary_rpc_method_handler(
            client_stream,
            request_deserializer=pb.ListImagesRequest.FromString,
            response_serializer=pb.ListImagesResponse.SerializeToString,
        ),
    }
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.T", handlers),))
    address = f"unix:{tmp_path}/s.sock"
    server.add_insecure_port(address)
    await server.start()
    return server, address


@pytest.mark.parametrize("method", ["List", "Upload"])
def test_a_malformed_message_is_invalid_argument_and_reaches_no_servicer(tmp_path: Path, method: str) -> None:
    async def main() -> grpc.aio.AioRpcError:
        calls: list[Any] = []
        server, address = await _serve(tmp_path, calls)
        try:
            async with grpc.aio.insecure_channel(address) as ch:
                try:
                    if method == "List":
                        await ch.unary_unary("/test.T/List")(MALFORMED, timeout=5)
                    else:
                        await ch.stream_unary("/test.T/Upload")(iter([MALFORMED]), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    assert calls == []
                    return exc
                raise AssertionError("a malformed message was accepted")
        finally:
            await server.stop(None)

    error = asyncio.run(main())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "malformed request message" in (error.details() or "")


def test_a_well_formed_message_still_reaches_the_servicer(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        calls: list[Any] = []
        server, address = await _serve(tmp_path, calls)
        try:
            async with grpc.aio.insecure_channel(address) as ch:
                await ch.unary_unary("/test.T/List")(pb.ListImagesRequest(all=True).SerializeToString())
        finally:
            await server.stop(None)
        return calls

    calls = asyncio.run(main())
    assert len(calls) == 1 and calls[0].all
