"""``dockyard tag``: give an image another name (SOURCE may be a name or an id prefix)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def run(args: argparse.Namespace) -> int:
    from dockyard.client import Client

    with Client(args.host) as client:
        client.images.tag(args.source, args.target)
    return 0
