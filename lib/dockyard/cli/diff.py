"""``dockyard diff``: files added (A), changed (C) and deleted (D) in a container's writable layer."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        diff = containers_pb2_grpc.ContainersStub(ch).Diff(pb.DiffRequest(id=args.container))
    for change in diff.changes:
        print(f"{change.kind} {change.path}")
    return 0
