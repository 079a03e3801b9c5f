"""``dockyard rmi``: untag and delete images ("Untagged: …", "Deleted: …" like docker)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="remove even if a container uses it")
    parser.add_argument("--no-prune", action="store_true", help="accepted for docker compatibility")
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    from dockyard.cli.each import each
    from dockyard.client import Client

    with Client(args.host) as client:

        def remove(ref: str) -> None:
            result = client.images.remove_detailed(ref, force=args.force)
            for name in result.untagged:
                print(f"Untagged: {name}")
            for digest in result.deleted:
                print(f"Deleted: {digest}")

        return each(args.images, remove, echo=False)
