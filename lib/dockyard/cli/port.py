"""``dockyard port``: a container's published ports ("80/tcp -> 0.0.0.0:8080")."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.human import port_lines
    from dockyard.core.errors import InvalidArgument, NotFound

    if args.private and not args.private.partition("/")[0].isdigit():
        raise InvalidArgument(f"bad port {args.private!r}: expected PORT or PORT/PROTO")
    with channel(args.host) as ch:
        container = containers_pb2_grpc.ContainersStub(ch).Inspect(
            pb.InspectContainerRequest(id=args.container)
        )
    lines = port_lines(container.ports, args.private)
    if args.private and not lines:
        proto = args.private if "/" in args.private else f"{args.private}/tcp"
        raise NotFound(f"no public port {proto!r} published for {args.container}")
    for line in lines:
        print(line)
    return 0
