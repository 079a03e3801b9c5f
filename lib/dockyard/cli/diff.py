"""``dockyard diff``: files added (A), changed (C) and deleted (D) in a container's writable layer.

One line per path, ``KIND PATH``. A path that is not valid UTF-8 is written as its exact bytes
(the wire's ``path_bytes``), so ``xargs``/scripts get the real name; docker prints U+FFFD there.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        diff = containers_pb2_grpc.ContainersStub(ch).Diff(pb.DiffRequest(id=args.container))
    out = sys.stdout.buffer  # a name that is not UTF-8 goes out as its exact bytes, as find prints it
    for change in diff.changes:
        out.write(f"{change.kind} ".encode() + (change.path_bytes or change.path.encode()) + b"\n")
    out.flush()
    return 0
