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
    from dockyard.client import Client

    with Client(args.host) as client:
        print(
            client.containers.commit(
                args.container, args.reference, message=args.message, author=args.author, changes=args.change
            )
        )
    return 0
