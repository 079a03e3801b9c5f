"""``dockyard stop``: send the stop signal, then SIGKILL after the grace period."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t",
        "--time",
        "--timeout",
        dest="time",
        type=int,
        default=None,
        help="seconds to wait before killing (default: the container's, else 10)",
    )
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.each import each
    from dockyard.cli.limits import INT32_MAX, integer

    if args.time is not None:  # before dialling: a number past int32 is no timeout anyone means
        args.time = integer(str(args.time), "--time", low=-INT32_MAX - 1, high=INT32_MAX)
    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        return each(
            args.containers, lambda c: stub.Stop(pb.StopContainerRequest(id=c, timeout_seconds=args.time))
        )
