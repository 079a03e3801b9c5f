"""``dockyard pull``: pull an image into the node's store, showing per-layer progress."""

from __future__ import annotations

import argparse


def tls_verify(value: str) -> bool:
    """``--tls-verify=false`` (podman's spelling); true/false/1/0/yes/no."""
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def add_tls_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-verify",
        type=tls_verify,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="false: plain HTTP to this registry (e.g. a local one)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    parser.add_argument("--platform", default="", help="os/arch[/variant]")
    add_tls_verify(parser)
    parser.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.api.types.v1 import types_pb2
    from dockyard.cli.client import channel
    from dockyard.cli.progress import ProgressView

    request = pb.PullRequest(reference=args.reference, insecure=not args.tls_verify)
    if args.platform:
        os_, _, rest = args.platform.partition("/")
        arch, _, variant = rest.partition("/")
        request.platform.CopyFrom(types_pb2.Platform(os=os_, architecture=arch, variant=variant))
    view = None if args.quiet else ProgressView()
    image = None
    moved = False
    said: set[str] = set()  # the server's own summary lines ("Digest: …", "Status: …")
    with channel(args.host) as ch:
        for msg in images_pb2_grpc.ImagesStub(ch).Pull(request):
            if msg.HasField("progress"):
                p = msg.progress
                moved = moved or p.current > 0
                if not p.id:
                    said.add(p.status.partition(":")[0])
                if view:
                    view.update(p.id, p.status, p.current, p.total)
            if msg.HasField("image"):
                image = msg.image
    if image is not None and not args.quiet:
        if image.repo_digests and "Digest" not in said:
            print(f"Digest: {image.repo_digests[0].split('@', 1)[-1]}")
        if "Status" not in said:
            state = "Downloaded newer image" if moved else "Image is up to date"
            print(f"Status: {state} for {args.reference}")
    print(args.reference)
    return 0
