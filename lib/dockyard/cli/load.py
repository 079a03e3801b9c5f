"""``dockyard load``: images from a tar (OCI layout or docker-archive), from a file or stdin."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", default="", metavar="FILE", help="read FILE, not stdin")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def open_input(path: str) -> Any:
    """``path`` opened for reading, or InvalidArgument with one line (before anything is sent)."""
    from dockyard.core.errors import InvalidArgument

    try:
        return open(path, "rb")
    except OSError as exc:
        raise InvalidArgument(f"cannot open {path}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    import sys

    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.import_ import chunks
    from dockyard.core.errors import InvalidArgument

    if not args.input and sys.stdin.isatty():
        raise InvalidArgument("no tar on stdin: use -i FILE or redirect stdin")
    source = open_input(args.input) if args.input else sys.stdin.buffer

    def requests() -> Iterator[Any]:
        for block in chunks(source):
            yield pb.LoadChunk(data=block)

    try:
        with channel(args.host) as ch:
            result = images_pb2_grpc.ImagesStub(ch).Load(requests())
    finally:
        if args.input:
            source.close()
    if not args.quiet:
        for image in result.images:
            for name in image.repo_tags:
                print(f"Loaded image: {name}")
            if not image.repo_tags:
                print(f"Loaded image ID: {image.id}")
    return 0
