"""``dockyard wait``: block until containers exit; print each exit code."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.each import each

    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)

        def wait(name: str) -> None:
            print(stub.Wait(pb.WaitContainerRequest(id=name)).exit_code, flush=True)

        return each(args.containers, wait, echo=False)
