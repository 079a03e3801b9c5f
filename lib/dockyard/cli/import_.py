"""``dockyard import``: make an image from a tarball (a rootfs tar or an OCI layout), streamed in
chunks of at most 1 MiB; prints the new image's id."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

CHUNK = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    parser.add_argument("-m", "--message", default="", help="commit message for the imported image")
    parser.add_argument("file", metavar="FILE|-", help="a tar file, or - for stdin")
    parser.add_argument("reference", nargs="?", default="", metavar="REPOSITORY[:TAG]")


def chunks(stream: Any, size: int = CHUNK) -> Iterator[bytes]:
    while block := stream.read(size):
        yield block


def run(args: argparse.Namespace) -> int:
    import sys

    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.load import open_input

    source = sys.stdin.buffer if args.file == "-" else open_input(args.file)

    def requests() -> Iterator[Any]:
        yield pb.ImportChunk(reference=args.reference, changes=args.change, message=args.message)
        for block in chunks(source):
            yield pb.ImportChunk(data=block)

    try:
        with channel(args.host) as ch:
            image = images_pb2_grpc.ImagesStub(ch).Import(requests())
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    print(image.id)
    return 0
