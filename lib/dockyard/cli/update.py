"""``dockyard update``: change containers' resource limits; a running one gets them at once.

Only the limits given change (``--memory 512m`` leaves ``--cpus`` as it was); ``--pids-limit -1``
lifts a pids limit. Prints each container's name as it is updated, as docker does.
"""

from __future__ import annotations

import argparse

from dockyard.cli import limits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    limits.add_arguments(parser)
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.each import each
    from dockyard.core.errors import InvalidArgument

    changes = limits.parse(args)
    if not changes:
        raise InvalidArgument(
            "update: give at least one of --memory, --memory-swap, --cpus, --cpu-shares, --pids-limit"
        )
    resources = pb.Resources(**changes)
    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        return each(
            args.containers, lambda c: stub.Update(pb.UpdateContainerRequest(id=c, resources=resources))
        )
