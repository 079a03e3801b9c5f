"""``dockyard network create|ls|inspect|rm|connect|disconnect|prune``: docker's network verbs.

Also the network flags of ``create``/``run`` (``--network-alias``, ``--ip``, ``--dns``,
``--add-host``): :func:`add_run_arguments` and :func:`apply`. Stdlib only at import.
"""

from __future__ import annotations

import argparse
from typing import Any

ACTIONS = {
    "create": "Create a bridge network",
    "ls": "List networks",
    "inspect": "Show networks in detail (JSON)",
    "rm": "Remove networks (refused while a container is on one)",
    "connect": "Connect a container to a network",
    "disconnect": "Disconnect a container from a network",
    "prune": "Remove every network no container is on",
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The network flags ``create`` and ``run`` share (``--network`` itself is spec.py's)."""
    a = parser.add_argument
    a(
        "--network-alias",
        "--net-alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name on the network",
    )
    a("--ip", default="", help="the container's IPv4 address on its user network")
    a("--dns", action="append", default=[], metavar="IP", help="a DNS server for resolv.conf")
    a(
        "--add-host",
        action="append",
        default=[],
        metavar="NAME:IP",
        help="an /etc/hosts line (IP may be host-gateway)",
    )


def apply(args: argparse.Namespace, spec: Any) -> None:
    spec.network_aliases.extend(args.network_alias)
    spec.ip = args.ip
    spec.dns.extend(args.dns)
    spec.extra_hosts.extend(args.add_host)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    aliases = {"ls": ["list"], "rm": ["remove"]}
    for name, summary in ACTIONS.items():
        cmd = sub.add_parser(name, aliases=aliases.get(name, []), help=summary, description=summary)
        _ADD[name](cmd)


def _add_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="bridge", help="network driver (bridge only)")
    p.add_argument("--subnet", default="", help="IPv4 subnet in CIDR form (default: a free 10.89.N.0/24)")
    p.add_argument("--gateway", default="", help="the bridge's address in the subnet (default: its first)")
    p.add_argument("--label", "-l", action="append", default=[], metavar="KEY[=VALUE]", help="set metadata")
    p.add_argument("name", metavar="NETWORK")


def _add_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.add_argument(
        "--format",
        default="table",
        help="table (default), json (one object a line), or a Go template: '{{.Name}}\\t{{.Driver}}'",
    )


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", metavar="NETWORK")


def _add_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="no error for a network that does not exist")
    p.add_argument("names", nargs="+", metavar="NETWORK")


def _add_connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alias", action="append", default=[], metavar="NAME", help="another name on the network")
    p.add_argument("--ip", default="", help="the container's IPv4 address on the network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")


def _add_disconnect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="accepted for docker's habits")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")


def _add_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


_ADD = {
    "create": _add_create,
    "ls": _add_ls,
    "inspect": _add_inspect,
    "rm": _add_rm,
    "connect": _add_connect,
    "disconnect": _add_disconnect,
    "prune": _add_prune,
}


def network_dict(n: Any) -> dict[str, Any]:
    """A Network message in docker's ``network inspect`` shape."""
    from dockyard.cli import human

    created = human.epoch(n.created) if n.HasField("created") else 0
    return {
        "Name": n.name,
        "Id": n.id,
        "Created": human.rfc3339(created) if created else "",
        "Driver": n.driver,
        "Scope": "local",
        "IPAM": {"Config": [{"Subnet": n.subnet, "Gateway": n.gateway}] if n.subnet else []},
        "Labels": dict(n.labels),
        "Options": {"bridge": n.bridge} if n.bridge else {},
        "Containers": {
            e.container_id: {
                "Name": e.container_name,
                "IPv4Address": f"{e.ip}/{e.prefix_len}",
                "Aliases": list(e.aliases),
                "Interface": e.interface,
                "Running": e.running,
            }
            for e in n.containers
        },
    }


# docker's column titles for ``network ls --format 'table …'`` (cli/command/formatter/network.go)
TEMPLATE_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "Label": "LABEL",
    "CreatedAt": "CREATED AT",
    "Subnet": "SUBNET",
    "Gateway": "GATEWAY",
}


def ls_context(n: Any) -> Any:
    """What a ``network ls --format`` template sees: docker's fields, plus Subnet and Gateway."""
    from dockyard.cli import human
    from dockyard.cli.gofmt import struct

    labels = dict(n.labels)
    created = human.epoch(n.created) if n.HasField("created") else 0
    return struct(
        "*formatter.networkContext",
        {
            "ID": n.id[:12],
            "Name": n.name,
            "Driver": n.driver,
            "Scope": "local",
            "IPv6": "false",
            "Internal": "false",
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Label": lambda key: labels.get(key, ""),
            "CreatedAt": human.rfc3339(created) if created else "",
            "Subnet": n.subnet,
            "Gateway": n.gateway,
        },
    )


def run(args: argparse.Namespace) -> int:
    from dockyard.api.networks.v1 import networks_pb2 as pb
    from dockyard.api.networks.v1 import networks_pb2_grpc
    from dockyard.cli.client import channel

    with channel(args.host) as ch:
        stub = networks_pb2_grpc.NetworksStub(ch)
        action = {"list": "ls", "remove": "rm"}.get(args.action, args.action)
        return int(_RUN[action](stub, pb, args))


def _create(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.client.grammar import parse_labels

    net = stub.Create(
        pb.CreateNetworkRequest(
            name=args.name,
            driver="" if args.driver == "bridge" else args.driver,
            subnet=args.subnet,
            gateway=args.gateway,
            labels=parse_labels(args.label),
        )
    )
    print(net.id)
    return 0


def _ls(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli import gofmt
    from dockyard.cli.human import json_line
    from dockyard.cli.output import table

    gofmt.check(args.format)
    networks = stub.List(pb.ListNetworksRequest()).networks
    if args.quiet:
        for n in networks:
            print(n.name)
    elif gofmt.is_template(args.format):
        print(gofmt.render(args.format, [ls_context(n) for n in networks], TEMPLATE_HEADERS), end="")
    elif args.format.strip() == "json":
        for n in networks:
            print(json_line(network_dict(n)))
    else:
        table(
            ["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"],
            [[n.id[:12], n.name, n.driver, n.subnet, n.gateway] for n in networks],
        )
    return 0


def _inspect(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli.output import emit_json, fail

    found = []
    status = 0
    for name in args.names:
        try:
            found.append(network_dict(stub.Inspect(pb.InspectNetworkRequest(id=name))))
        except Exception as exc:
            status = fail(exc)
    emit_json(found)
    return status


def _rm(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    import grpc

    from dockyard.cli.each import each

    def one(name: str) -> None:
        try:
            stub.Remove(pb.RemoveNetworkRequest(id=name))
        except grpc.RpcError as exc:
            if not (args.force and exc.code() == grpc.StatusCode.NOT_FOUND):
                raise

    return each(args.names, one)


def _connect(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    stub.Connect(
        pb.ConnectNetworkRequest(
            network=args.network, container=args.container, aliases=args.alias, ip=args.ip
        )
    )
    return 0


def _disconnect(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    stub.Disconnect(
        pb.DisconnectNetworkRequest(network=args.network, container=args.container, force=args.force)
    )
    return 0


def _prune(stub: Any, pb: Any, args: argparse.Namespace) -> int:
    from dockyard.cli.human import confirm

    if not args.force and not confirm(
        "WARNING! This will remove all custom networks not used by at least one container.\n"
        "Are you sure you want to continue?"
    ):
        return 0
    result = stub.Prune(pb.PruneNetworksRequest())
    if result.deleted:
        print("Deleted Networks:")
        for name in result.deleted:
            print(name)
    return 0


_RUN = {
    "create": _create,
    "ls": _ls,
    "inspect": _inspect,
    "rm": _rm,
    "connect": _connect,
    "disconnect": _disconnect,
    "prune": _prune,
}
