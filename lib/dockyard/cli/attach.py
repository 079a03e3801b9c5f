"""``dockyard attach``: join this terminal to a running container's stdio, as docker attach does.

Its stdin goes to the container when the container keeps stdin open (``-i`` at create), unless
``--no-stdin``; the exit code is the container's once it exits. On a TTY the detach keys
(``--detach-keys``, Ctrl-P Ctrl-Q by default) leave it running.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    parser.add_argument(
        "--detach-keys", default=None, help="keys that detach from a TTY (default ctrl-p,ctrl-q)"
    )
    parser.add_argument("--sig-proxy", default="true", help=argparse.SUPPRESS)  # docker's; Ctrl-C is proxied
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from dockyard.cli.run import attach
    from dockyard.cli.stdio import parse_detach_keys
    from dockyard.client import Client
    from dockyard.core.errors import FailedPrecondition

    if args.detach_keys is not None:
        parse_detach_keys(args.detach_keys)
    with Client(args.host) as client:
        info = client.containers.get(args.container)
        if info.state != "running":
            raise FailedPrecondition("You cannot attach to a stopped container, start it first")
        code = attach(
            client.channel,
            info.id,
            interactive=info.interactive and not args.no_stdin,
            tty=info.tty,
            start=False,
            detach_keys=args.detach_keys,
        )
    return 0 if code is None else code
