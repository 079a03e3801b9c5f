"""``dockyard tag``: give an image another name (SOURCE may be a name or an id prefix)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        images_pb2_grpc.ImagesStub(ch).Tag(pb.TagRequest(source=args.source, target=args.target))
    return 0
