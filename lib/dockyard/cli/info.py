"""``dockyard info``: the gateway, every backend, their health and versions, and the event bus."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the gateway")


def run(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import emit_json, table

    with channel(args.host) as ch:
        status = system_pb2_grpc.PlatformStub(ch).Status(system_pb2.StatusRequest(), timeout=args.timeout)
    if args.format == "json":
        emit_json(MessageToDict(status, preserving_proto_field_name=True))
        return 0
    state = system_pb2.ServiceState.Name
    gw = status.gateway
    print(f"Gateway:   {args.host} (dockyard {gw.version}, node {gw.node})")
    connected = "connected" if status.events_connected else "NOT connected"
    print(f"Events:    stream {status.events_stream}, {connected}")
    print()
    rows = [
        (
            b.name,
            b.address,
            b.health,
            state(b.info.state).removeprefix("SERVICE_STATE_").lower(),
            b.info.version or "-",
            b.info.message,
        )
        for b in status.backends
    ]
    table(("SERVICE", "ADDRESS", "HEALTH", "STATE", "VERSION", "MESSAGE"), rows)
    return 0
