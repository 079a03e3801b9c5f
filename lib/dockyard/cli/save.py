"""``dockyard save``: images as one tar (OCI layout, or docker-archive for ``docker load``).

With ``-o`` the tar is written beside FILE and renamed into place when complete, so a failed save
leaves no half-written archive. Without it, stdout (refused when stdout is a terminal).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument("--format", choices=("oci", "docker-archive"), default="oci", help="archive format")
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import os
    import sys
    import tempfile

    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.core.errors import InvalidArgument

    if not args.output and sys.stdout.isatty():
        raise InvalidArgument("refusing to write a tar to a terminal: use -o FILE or redirect stdout")
    request = pb.SaveRequest(references=args.images, format=args.format)
    fd, tmp, target = -1, "", ""
    if args.output:  # a place we cannot write is the user's mistake: say so before dialling
        target = os.path.abspath(args.output)
        if os.path.isdir(target):
            raise InvalidArgument(f"cannot write {args.output}: it is a directory")
        try:
            fd, tmp = tempfile.mkstemp(prefix=".dockyard-save-", dir=os.path.dirname(target))
        except OSError as exc:
            raise InvalidArgument(f"cannot write {args.output}: {exc.strerror or exc}") from None
    try:
        with channel(args.host) as ch:
            stream = images_pb2_grpc.ImagesStub(ch).Save(request)
            if not args.output:
                out = sys.stdout.buffer
                for chunk in stream:
                    out.write(chunk.data)
                out.flush()
                return 0
            with os.fdopen(fd, "wb") as fh:
                for chunk in stream:
                    fh.write(chunk.data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    except BaseException:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return 0
