"""``dockyard rename``: give a container a new name."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("name", metavar="NEW_NAME")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        containers_pb2_grpc.ContainersStub(ch).Rename(
            pb.RenameContainerRequest(id=args.container, name=args.name)
        )
    return 0
