"""``dockyard ps``: list containers like docker (running only unless ``-a``).

Filters are applied here, on what the server lists: ``name=`` (substring), ``id=`` (prefix),
``status=`` (created, running, paused, exited, dead), ``label=KEY`` or ``label=KEY=VALUE``,
``ancestor=`` (the image as given at create, or its id prefix). The same key given twice ORs,
different keys AND.
"""

from __future__ import annotations

import argparse
from typing import Any

_FILTER_KEYS = ("name", "id", "status", "label", "ancestor", "exited")
HEADERS = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show every container (default: running)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only ids")
    parser.add_argument("-n", "--last", type=int, default=-1, help="the last N created (any state)")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest created (any state)")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate ids and commands")
    parser.add_argument(
        "--format",
        default="table",
        help="table, json (one object a line), or a Go template: '{{.Names}}', 'table {{.ID}}\\t{{.Status}}'",
    )
    parser.add_argument(
        "-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help=", ".join(_FILTER_KEYS)
    )


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    from dockyard.core.errors import InvalidArgument

    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or key not in _FILTER_KEYS:
            raise InvalidArgument(
                f"bad filter {item!r}: use KEY=VALUE with KEY one of {', '.join(_FILTER_KEYS)}"
            )
        out.setdefault(key, []).append(value)
    return out


def matches(c: Any, filters: dict[str, list[str]]) -> bool:
    """Whether container ``c`` (a Container message or alike) passes every filter key."""
    from dockyard.cli.human import state_name

    bare_id = c.id.split(":", 1)[-1]
    tests = {
        "name": lambda v: v in c.name,
        "id": lambda v: bare_id.startswith(v.split(":", 1)[-1]),
        "status": lambda v: state_name(c.state) == v,
        "label": lambda v: (
            c.spec.labels.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v else v in c.spec.labels
        ),
        "ancestor": lambda v: v in (c.image, c.spec.image) or c.image_id.split(":", 1)[-1].startswith(v),
        "exited": lambda v: state_name(c.state) == "exited" and str(c.exit_code) == v,
    }
    return all(any(tests[key](v) for v in values) for key, values in filters.items())


def row(c: Any, no_trunc: bool = False, now: float | None = None) -> dict[str, str]:
    """The columns of one container, keyed like ``docker ps --format json``."""
    from dockyard.cli import health_restart, human

    created = human.epoch(c.created)
    return {
        "ID": human.short_id(c.id, no_trunc),
        "Image": c.image or c.spec.image,
        "Command": human.command_column(list(c.command), no_trunc),
        "CreatedAt": human.rfc3339(created),
        "RunningFor": human.ago(created, now),
        "Status": health_restart.status(  # with health and restart state (dockyard.cli.health_restart)
            c,
            human.status_column(c.state, c.exit_code, human.epoch(c.started), human.epoch(c.finished), now),
            now,
        ),
        "State": human.state_name(c.state),
        "Ports": human.port_column(c.ports),
        "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.spec.labels.items())),
    }


# docker's column titles for ``ps --format 'table …'`` (cli/command/formatter/container.go)
TEMPLATE_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Label": "LABEL",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
}


def context(c: Any, no_trunc: bool = False, now: float | None = None) -> Any:
    """What a ``ps --format`` template sees: docker's container fields (``.Label "k"`` a method)."""
    from dockyard.cli.gofmt import struct

    labels = dict(c.spec.labels)
    mounts = [m.source if m.type == "volume" and m.source else m.target for m in c.spec.mounts]
    networks = [n.network for n in c.networks] or ([c.spec.network] if c.spec.network else [])
    return struct(
        "*formatter.ContainerContext",
        {
            **row(c, no_trunc, now),
            "Size": "",
            "Mounts": ",".join(mounts),
            "LocalVolumes": str(sum(1 for m in c.spec.mounts if m.type == "volume")),
            "Networks": ",".join(networks),
            "Label": lambda key: labels.get(key, ""),
        },
    )


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli import gofmt
    from dockyard.cli.client import channel, list_all
    from dockyard.cli.human import json_line, short_id
    from dockyard.cli.output import table

    gofmt.check(args.format)  # a bad template is refused before the platform is asked
    filters = parse_filters(args.filter)
    last = 1 if args.latest else args.last
    with channel(args.host) as ch:
        listing = list_all(
            containers_pb2_grpc.ContainersStub(ch).List,
            pb.ListContainersRequest(all=args.all or last >= 0),
            "containers",
        )
    containers = [c for c in listing if matches(c, filters)]
    containers.sort(key=lambda c: (c.created.seconds, c.created.nanos), reverse=True)
    if last >= 0:
        containers = containers[:last]
    if args.quiet:
        for c in containers:
            print(short_id(c.id, args.no_trunc))
        return 0
    if gofmt.is_template(args.format):
        print(
            gofmt.render(args.format, [context(c, args.no_trunc) for c in containers], TEMPLATE_HEADERS),
            end="",
        )
        return 0
    rows = [row(c, args.no_trunc) for c in containers]
    if args.format.strip() == "json":
        for r in rows:
            print(json_line(r))
        return 0
    keys = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")
    table(HEADERS, [[r[k] for k in keys] for r in rows])
    return 0
