"""dockyard-gateway: the one public gRPC API over registry, runtime and builder."""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.adapters.host import HostConfig, add_host_flags, run_service
from dockyard.core import logging
from dockyard.gateway.app import GatewayConfig, build

GRPC_PORT = 7070


def parse(argv: list[str] | None) -> GatewayConfig:
    parser = argparse.ArgumentParser(
        prog="dockyard-gateway",
        description="The public gRPC API of Dockyard: forwards images/containers to the runtime, "
        "builds to the builder, registry admin to the registry; serves platform status and events.",
    )
    add_host_flags(parser, "gateway", GRPC_PORT)
    group = parser.add_argument_group("backends")
    for name, port in (("registry", 7071), ("runtime", 7072), ("builder", 7073)):
        env = f"DOCKYARD_GATEWAY_{name.upper()}"
        group.add_argument(
            f"--{name}",
            default=os.environ.get(env, f"127.0.0.1:{port}"),
            help=f"gRPC address of the {name} [{env}, default 127.0.0.1:{port}]",
        )
    args = parser.parse_args(argv)
    return GatewayConfig(HostConfig.from_args("gateway", args), args.registry, args.runtime, args.builder)


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
