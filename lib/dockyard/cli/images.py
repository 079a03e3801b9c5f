"""``dockyard images``: the node's images, one row per name (untagged: <none> <none>)."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show intermediate images too")
    parser.add_argument("-q", "--quiet", action="store_true", help="only ids")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("--no-trunc", action="store_true", help="full ids")
    parser.add_argument(
        "--format",
        default="table",
        help="table, json (one object a line), or a Go template: 'table {{.Repository}}\\t{{.Tag}}'",
    )
    parser.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the server (e.g. dangling=true, label=k=v)",
    )
    parser.add_argument("reference", nargs="?", help="only images of this repository[:tag]")


def rows(images: list[Any], no_trunc: bool = False, now: float | None = None) -> list[dict[str, str]]:
    """One dict per (image, name), keyed like ``docker images --format json``."""
    from dockyard.cli import human

    out = []
    for image in images:
        digests = {d.split("@", 1)[0]: d.split("@", 1)[1] for d in image.repo_digests if "@" in d}
        created = human.epoch(image.created)
        names = [human.split_repo_tag(t) for t in image.repo_tags] or [(human.NONE, human.NONE)]
        if not image.repo_tags:  # a digest-only image still shows its repository
            names = [(d.split("@", 1)[0], human.NONE) for d in image.repo_digests[:1]] or names
        for repo, tag in names:
            out.append(
                {
                    "Repository": repo,
                    "Tag": tag,
                    "Digest": digests.get(repo, human.NONE),
                    "ID": human.short_id(image.id, no_trunc),
                    "CreatedSince": human.ago(created, now),
                    "CreatedAt": human.rfc3339(created),
                    "Size": human.human_size(image.size),
                }
            )
    return out


# docker's column titles for ``images --format 'table …'`` (cli/command/formatter/image.go)
TEMPLATE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "VirtualSize": "SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}


def context(r: dict[str, str]) -> Any:
    """What an ``images --format`` template sees: docker's image fields."""
    from dockyard.cli.gofmt import struct

    na = "N/A"  # docker's answer when it did not count (no -s / system df)
    extra = {"Containers": na, "VirtualSize": r["Size"], "SharedSize": na, "UniqueSize": na}
    return struct("*formatter.imageContext", {**r, **extra})


def _selected(reference: str | None, row: dict[str, str]) -> bool:
    if not reference:
        return True
    from dockyard.cli.human import split_repo_tag

    repo, tag = split_repo_tag(reference)
    if repo == "<none>":
        return False
    return row["Repository"] == repo and ((tag == "<none>" and ":" not in reference) or row["Tag"] == tag)


def run(args: argparse.Namespace) -> int:
    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli import gofmt
    from dockyard.cli.client import channel, list_all
    from dockyard.cli.human import json_line
    from dockyard.cli.output import table

    gofmt.check(args.format)  # a bad template is refused before the platform is asked
    with channel(args.host) as ch:
        listing = list_all(
            images_pb2_grpc.ImagesStub(ch).List,
            pb.ListImagesRequest(all=args.all, filters=args.filter),
            "images",
        )
    listing.sort(key=lambda i: (i.created.seconds, i.created.nanos, i.id), reverse=True)  # pages are by id
    found = [r for r in rows(listing, args.no_trunc) if _selected(args.reference, r)]
    if args.quiet:
        seen: set[str] = set()
        for r in found:
            if r["ID"] not in seen:
                seen.add(r["ID"])
                print(r["ID"])
        return 0
    if gofmt.is_template(args.format):
        print(gofmt.render(args.format, [context(r) for r in found], TEMPLATE_HEADERS), end="")
        return 0
    if args.format.strip() == "json":
        for r in found:
            print(json_line(r))
        return 0
    keys = ["Repository", "Tag", *(["Digest"] if args.digests else []), "ID", "CreatedSince", "Size"]
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    table(headers, [[r[k] for k in keys] for r in found])
    return 0
