"""``dockyard version``: the CLI's version; ``--format`` as docker's (``{{.Client.Version}}``,
``{{.Server.Version}}``, ``{{json .}}``), the Server part asked of the gateway (nil if unreachable)."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--format", default="", help="a Go template: '{{.Client.Version}}', '{{.Server.Version}}'"
    )


def client_version() -> dict[str, Any]:
    import platform

    from dockyard.core.service import VERSION

    return {
        "Platform": {"Name": "Dockyard"},
        "Version": VERSION,
        "PythonVersion": platform.python_version(),
        "Os": platform.system().lower(),
        "Arch": platform.machine(),
    }


def server_version(host: str) -> dict[str, Any] | None:
    """The gateway's version and node, or None when it does not answer within two seconds."""
    try:
        from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
        from dockyard.cli.client import channel

        with channel(host) as ch:
            status = system_pb2_grpc.PlatformStub(ch).Status(system_pb2.StatusRequest(), timeout=2.0)
    except Exception:  # no platform: docker prints the client part and nil for the server too
        return None
    return {
        "Platform": {"Name": "Dockyard"},
        "Version": status.gateway.version,
        "Node": status.gateway.node,
        "Components": [{"Name": b.name, "Version": b.info.version} for b in status.backends],
    }


def run(args: argparse.Namespace) -> int:
    from dockyard.core.service import VERSION

    if not args.format:
        print(f"dockyard {VERSION}")
        return 0
    from dockyard.cli import gofmt
    from dockyard.cli.gofmt import struct

    gofmt.check(args.format)
    wants_server = "Server" in args.format or "json" in args.format
    server = server_version(args.host) if wants_server else None
    view = struct("types.VersionResponse", {"Client": client_version(), "Server": server})
    print(gofmt.render_one(args.format, view), end="")
    return 0
