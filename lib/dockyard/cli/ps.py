"""``dockyard ps``: list containers like docker (running only unless ``-a``).

``--filter`` goes to the runtime, which applies docker's keys and rules
(:mod:`dockyard.runtime.listing`): every ``label=`` must match, another key given twice matches
either value, different keys all match.
"""

from __future__ import annotations

import argparse
from typing import Any

_FILTER_KEYS = "id, name, label, status, ancestor, exited, health, network, volume, before, since"
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
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help=_FILTER_KEYS)


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
    last = 1 if args.latest else args.last
    with channel(args.host) as ch:
        containers = list_all(
            containers_pb2_grpc.ContainersStub(ch).List,
            pb.ListContainersRequest(all=args.all or last >= 0, filters=args.filter),
            "containers",
        )
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
