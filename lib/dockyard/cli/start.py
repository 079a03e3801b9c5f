"""``dockyard start``: start stopped containers; ``-a`` attaches to one (with ``-i`` its stdin too)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a", "--attach", action="store_true", help="attach stdout/stderr, exit with its code"
    )
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument(
        "--detach-keys", default=None, help="keys that detach from a TTY (default ctrl-p,ctrl-q)"
    )
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.each import each
    from dockyard.core.errors import InvalidArgument

    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        if args.attach or args.interactive:
            if len(args.containers) > 1:
                raise InvalidArgument("you cannot start and attach multiple containers at once")
            from dockyard.cli.run import attach

            name = args.containers[0]
            tty = stub.Inspect(pb.InspectContainerRequest(id=name)).spec.tty
            code = attach(
                ch, name, interactive=args.interactive, tty=tty, start=True, detach_keys=args.detach_keys
            )
            return 0 if code is None else code
        return each(args.containers, lambda c: stub.Start(pb.StartContainerRequest(id=c)))
