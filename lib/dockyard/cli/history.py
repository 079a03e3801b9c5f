"""``dockyard history``: the layers of an image, newest first, with the steps that made them."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only ids")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate ids and steps")
    parser.add_argument(
        "--human",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="human-readable sizes and times (default true)",
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="json: one object a line"
    )
    parser.add_argument("image", metavar="IMAGE")


def _bool(value: str) -> bool:
    from dockyard.cli.pull import tls_verify

    return tls_verify(value)


def rows(
    entries: list[Any], no_trunc: bool = False, human: bool = True, now: float | None = None
) -> list[dict[str, str]]:
    """One dict per history entry, keyed like ``docker history --format json``."""
    from dockyard.cli import human as h

    out = []
    for e in entries:
        created = h.epoch(e.created)
        step = " ".join(e.created_by.split()) if not no_trunc else e.created_by
        out.append(
            {
                "ID": h.short_id(e.id, no_trunc) if e.id else h.MISSING,
                "CreatedSince": h.ago(created, now) if human else h.rfc3339(created),
                "CreatedAt": h.rfc3339(created),
                "CreatedBy": step if no_trunc else h.ellipsis(step, 45),
                "Size": h.human_size(e.size) if human else str(e.size),
                "Comment": e.comment,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.human import json_line
    from dockyard.cli.output import table

    with channel(args.host) as ch:
        history = images_pb2_grpc.ImagesStub(ch).History(pb.HistoryRequest(reference=args.image))
    found = rows(list(history.entries), args.no_trunc, args.human)
    if args.quiet:
        for r in found:
            print(r["ID"])
    elif args.format == "json":
        for r in found:
            print(json_line(r))
    else:
        keys = ("ID", "CreatedSince", "CreatedBy", "Size", "Comment")
        table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), [[r[k] for k in keys] for r in found])
    return 0
