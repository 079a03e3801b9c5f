"""dockyard-gateway: the one public gRPC API over registry, runtime and builder.

Whoever can call the gateway can run code as the platform's user, so it serves a unix socket
(mode 0660, group ``dockyard``) by default, and TCP only with mutual TLS: ``--grpc-listen
tcp://host:port`` needs ``--tlscacert --tlscert --tlskey`` and then accepts only clients whose
certificate the CA signed.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from dockyard.adapters.grpc.server import unix_path
from dockyard.adapters.grpc.tls import ServerTls
from dockyard.adapters.host import (
    HostConfig,
    add_host_flags,
    backend_socket,
    platform_group,
    public_socket,
    run_service,
)
from dockyard.core import logging
from dockyard.gateway.app import GatewayConfig, build

GRPC_PORT = 7070
BACKENDS = (("registry", 7071), ("runtime", 7072), ("builder", 7073))


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"DOCKYARD_GATEWAY_{name}", default)


def parse(argv: list[str] | None) -> GatewayConfig:
    parser = argparse.ArgumentParser(
        prog="dockyard-gateway",
        description="The public gRPC API of Dockyard: forwards images/containers to the runtime, "
        "builds to the builder, registry admin to the registry; serves platform status and events. "
        "Listens on a unix socket by default (/run/dockyard/dockyard.sock as root, else "
        "$XDG_RUNTIME_DIR/dockyard/dockyard.sock, else <state-dir>/../dockyard.sock); TCP only with "
        "mutual TLS.",
    )
    add_host_flags(parser, "gateway", GRPC_PORT)
    access = parser.add_argument_group("access")
    access.add_argument(
        "--socket-group",
        default=_env("SOCKET_GROUP", platform_group()),
        help="group allowed to use the unix socket (mode 0660) [DOCKYARD_GATEWAY_SOCKET_GROUP, "
        "default dockyard]",
    )
    for flag, what in (("tlscacert", "CA that signs client certificates"), ("tlscert", "server certificate"),
                       ("tlskey", "server key")):  # fmt: skip
        env = f"DOCKYARD_GATEWAY_{flag.upper()}"
        access.add_argument(f"--{flag}", default=_env(flag.upper()), help=f"PEM {what} (TCP only) [{env}]")
    access.add_argument(
        "--docker-api",
        default=_env("DOCKER_API"),
        help="where the Docker Engine API (dockyard-engine) serves, reported by Info for `dockyard info` "
        "[DOCKYARD_GATEWAY_DOCKER_API]",
    )
    group = parser.add_argument_group("backends")
    for name, port in BACKENDS:
        env = f"DOCKYARD_GATEWAY_{name.upper()}"
        group.add_argument(
            f"--{name}",
            default=_env(name.upper()),
            help=f"gRPC address of the {name}: unix:/path or host:port (e.g. 127.0.0.1:{port}) "
            f"[{env}, default unix:<state-dir>/../sockets/{name}.sock]",
        )
    args = parser.parse_args(argv)
    host = HostConfig.from_args("gateway", args)
    platform_dir = host.state_dir.parent
    if not args.grpc_listen:
        host = replace(host, grpc_listen=f"unix:{public_socket(platform_dir)}")
    try:
        tcp = unix_path(host.grpc_listen) is None
    except ValueError as exc:
        parser.error(str(exc))
    tls_files = (args.tlscacert, args.tlscert, args.tlskey)
    if tcp:
        if not all(tls_files):
            parser.error(
                f"refusing to serve {host.grpc_listen} without mutual TLS: TCP needs --tlscacert, "
                "--tlscert and --tlskey (or listen on a unix socket)"
            )
        host = replace(host, tls=ServerTls(*(Path(f) for f in tls_files)))
    else:
        host = replace(host, socket_mode=0o660, socket_group=args.socket_group or None)
    backends = {name: getattr(args, name) or backend_socket(platform_dir, name) for name, _ in BACKENDS}
    return GatewayConfig(
        host, backends["registry"], backends["runtime"], backends["builder"], docker_api=args.docker_api
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    logging.configure("gateway")

    async def serve() -> None:
        host, backends, events = build(config)
        try:
            await host.run()
        finally:
            await events.close()
            for backend in backends:
                await backend.close()

    return run_service("gateway", serve)


if __name__ == "__main__":
    sys.exit(main())
