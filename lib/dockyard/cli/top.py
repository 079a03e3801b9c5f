"""``dockyard top``: a container's processes, as ``ps`` shows them (default ``ps -ef``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="[ps OPTIONS]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import table

    with channel(args.host) as ch:
        top = containers_pb2_grpc.ContainersStub(ch).Top(
            pb.TopRequest(id=args.container, ps_args=args.ps_args)
        )
    table(top.titles, [list(p.fields) for p in top.processes])
    return 0
