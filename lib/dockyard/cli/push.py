"""``dockyard push``: push an image from the node's store to its registry, with progress."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dockyard.cli.pull import add_tls_verify

    parser.add_argument("-q", "--quiet", action="store_true", help="no progress")
    add_tls_verify(parser)
    parser.add_argument("reference", metavar="NAME[:TAG]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.progress import ProgressView

    request = pb.PushRequest(reference=args.reference, insecure=not args.tls_verify)
    view = None if args.quiet else ProgressView()
    manifest = None
    said = False  # the server printed the digest line itself
    with channel(args.host) as ch:
        for msg in images_pb2_grpc.ImagesStub(ch).Push(request):
            if view and msg.HasField("progress"):
                p = msg.progress
                said = said or (not p.id and " digest: " in p.status)
                view.update(p.id, p.status, p.current, p.total)
            if msg.HasField("manifest"):
                manifest = msg.manifest
    if manifest is not None and (args.quiet or not said):
        tag = args.reference.rsplit("/", 1)[-1].partition("@")[0]
        tag = tag.rpartition(":")[2] if ":" in tag else "latest"
        print(f"{tag}: digest: {manifest.digest} size: {manifest.size}")
    return 0
