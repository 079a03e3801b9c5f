"""``dockyard commit``: a new image from a container's changes; prints the image id."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--author", default="", help='author (e.g. "Jane <jane@example.org>")')
    parser.add_argument("-m", "--message", default="", help="commit message")
    parser.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("reference", nargs="?", default="", metavar="REPOSITORY[:TAG]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel

    request = pb.CommitRequest(
        container_id=args.container,
        reference=args.reference,
        message=args.message,
        author=args.author,
        changes=args.change,
    )
    with channel(args.host) as ch:
        print(containers_pb2_grpc.ContainersStub(ch).Commit(request).image_id)
    return 0
