"""``dockyard volume create|ls|inspect|rm|prune``: docker's volume verbs.

``inspect`` prints docker's JSON shape (CreatedAt, Driver, Labels, Mountpoint, Name, Options,
Scope) plus Anonymous and UsedBy; ``-f/--format`` takes a Go template (``{{.Mountpoint}}``,
``{{json .Labels}}``), and so does ``ls --format`` (``table {{.Name}}\t{{.Driver}}``).
``prune`` asks y/N unless ``-f`` and removes every volume no container uses — named ones too,
as docker did before 23.0 (``-a`` is accepted for today's docker habits).
"""

from __future__ import annotations

import argparse
from typing import Any

ACTIONS = {
    "create": "Create a volume",
    "ls": "List volumes",
    "inspect": "Show volumes in detail (JSON)",
    "rm": "Remove volumes (refused while a container uses one)",
    "prune": "Remove every volume no container uses",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    aliases = {"ls": ["list"], "rm": ["remove"]}  # docker's
    for name, summary in ACTIONS.items():
        cmd = sub.add_parser(name, aliases=aliases.get(name, []), help=summary, description=summary)
        _ADD[name](cmd)


def _add_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="local", help="volume driver (local only)")
    p.add_argument("--label", "-l", action="append", default=[], metavar="KEY[=VALUE]", help="set metadata")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="driver options")
    p.add_argument("--name", dest="name_flag", default="", help="the volume's name")
    p.add_argument("name", nargs="?", default="", metavar="VOLUME", help="the volume's name")


def _add_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dangling=true|false, name=…, label=KEY[=VALUE], label!=…, driver=local",
    )
    p.add_argument(
        "--format",
        default="table",
        help="table (default), json (one object a line), or a Go template: '{{.Name}}\\t{{.Driver}}'",
    )


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="", help="a Go template per volume: '{{.Mountpoint}}'")
    p.add_argument("names", nargs="+", metavar="VOLUME")


def _add_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="no error for a volume that does not exist")
    p.add_argument("names", nargs="+", metavar="VOLUME")


def _add_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("-a", "--all", action="store_true", help="accepted: every unused volume is pruned")
    p.add_argument(
        "--filter", action="append", default=[], metavar="KEY=VALUE", help="label=KEY[=VALUE], label!=…"
    )


_ADD = {"create": _add_create, "ls": _add_ls, "inspect": _add_inspect, "rm": _add_rm, "prune": _add_prune}


def volume_dict(v: Any) -> dict[str, Any]:
    """A Volume message in docker's ``volume inspect`` shape (plus Anonymous and UsedBy)."""
    from dockyard.cli import human

    created = human.epoch(v.created)
    return {
        "CreatedAt": human.rfc3339(created).replace(".000000000Z", "Z") if created else "",
        "Driver": v.driver,
        "Labels": dict(v.labels) or None,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": dict(v.options) or None,
        "Scope": v.scope,
        "Anonymous": v.anonymous,
        "UsedBy": list(v.used_by),
    }


# docker's column titles for ``volume ls --format 'table …'`` (cli/command/formatter/volume.go)
TEMPLATE_HEADERS = {
    "Name": "VOLUME NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS",
    "Label": "LABEL",
    "Links": "LINKS",
    "Size": "SIZE",
}


def ls_context(v: Any) -> Any:
    """What a ``volume ls --format`` template sees: docker's fields (Labels as k=v,…; Links is the
    number of containers using it)."""
    from dockyard.cli.gofmt import struct

    labels = dict(v.labels)
    return struct(
        "*formatter.volumeContext",
        {
            "Name": v.name,
            "Driver": v.driver,
            "Scope": v.scope,
            "Mountpoint": v.mountpoint,
            "Labels": ",".join(f"{k}={val}" for k, val in sorted(labels.items())),
            "Label": lambda key: labels.get(key, ""),
            "Links": str(len(v.used_by)),
            "Size": "N/A",
        },
    )


def render(template: str, value: dict[str, Any]) -> str:
    """``volume inspect -f``: the template over docker's volume object (a missing field is an error)."""
    from dockyard.cli.gofmt import render_one, struct

    return render_one(template, struct("*volume.Volume", value)).removesuffix("\n")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.volumes.v1 import volumes_pb2 as pb
    from dockyard.api.volumes.v1 import volumes_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        stub = volumes_pb2_grpc.VolumesStub(ch)
        action = {"list": "ls", "remove": "rm"}.get(args.action, args.action)
        return int(_RUN[action](stub, pb, args))


def _create(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.client.grammar import parse_labels
    from dockyard.core.errors import InvalidArgument

    if args.name and args.name_flag and args.name != args.name_flag:
        raise InvalidArgument(f"conflicting names: {args.name_flag!r} (--name) and {args.name!r}")
    options = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad -o {item!r}: expected KEY=VALUE")
        options[key] = value
    volume = stub.Create(
        pb.CreateVolumeRequest(
            name=args.name or args.name_flag,
            driver="" if args.driver == "local" else args.driver,
            labels=parse_labels(args.label),
            options=options,
        )
    )
    print(volume.name)
    return 0


def _ls(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli import gofmt
    from dockyard.cli.human import json_line
    from dockyard.cli.output import table

    gofmt.check(args.format)
    volumes = stub.List(pb.ListVolumesRequest(filters=args.filter)).volumes
    if args.quiet:
        for v in volumes:
            print(v.name)
    elif gofmt.is_template(args.format):
        print(gofmt.render(args.format, [ls_context(v) for v in volumes], TEMPLATE_HEADERS), end="")
    elif args.format.strip() == "json":
        for v in volumes:
            print(json_line(volume_dict(v)))
    else:
        table(["DRIVER", "VOLUME NAME"], [[v.driver, v.name] for v in volumes])
    return 0


def _inspect(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli import gofmt
    from dockyard.cli.output import emit_json, fail

    gofmt.check(args.format)
    found = []
    status = 0
    for name in args.names:
        try:
            found.append(volume_dict(stub.Inspect(pb.InspectVolumeRequest(name=name))))
        except Exception as exc:
            status = fail(exc)
    if args.format:
        for value in found:
            print(render(args.format, value))
    else:
        emit_json(found)
    return status


def _rm(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli.each import each

    return each(args.names, lambda n: stub.Remove(pb.RemoveVolumeRequest(name=n, force=args.force)))


def _prune(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli.human import confirm, human_size

    if not args.force and not confirm(
        "WARNING! This will remove all local volumes not used by at least one container.\n"
        "Are you sure you want to continue?"
    ):
        return 0
    result = stub.Prune(pb.PruneVolumesRequest(filters=args.filter))
    if result.deleted:
        print("Deleted Volumes:")
        for name in result.deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(result.space_reclaimed)}")
    return 0


_RUN = {"create": _create, "ls": _ls, "inspect": _inspect, "rm": _rm, "prune": _prune}
