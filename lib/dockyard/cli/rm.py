"""``dockyard rm``: remove containers (``-f`` stops a running one first)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="kill and remove a running container")
    parser.add_argument("-v", "--volumes", action="store_true", help="remove its anonymous volumes too")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.each import each

    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        return each(
            args.containers,
            lambda c: stub.Remove(pb.RemoveContainerRequest(id=c, force=args.force, volumes=args.volumes)),
        )
