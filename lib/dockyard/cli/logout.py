"""``dockyard logout``: forget the node's credentials for a registry."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        images_pb2_grpc.ImagesStub(ch).Logout(pb.LogoutRequest(registry=args.server))
    print(f"Removing login credentials for {args.server}")
    return 0
