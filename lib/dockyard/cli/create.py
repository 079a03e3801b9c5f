"""``dockyard create``: make a container from an image without starting it; prints its id."""

from __future__ import annotations

import argparse

from dockyard.cli import spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    spec.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import fail

    try:
        request = pb.CreateContainerRequest(spec=spec.build_spec(args))
    except Exception as exc:  # a flag the CLI refuses: docker's 125, before dialling
        fail(exc)
        return 125
    with channel(args.host) as ch:
        container = containers_pb2_grpc.ContainersStub(ch).Create(request)
    print(container.id)
    return 0
