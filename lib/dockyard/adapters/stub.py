"""A service that is not written yet: it starts, reports health, and says so clearly.

Info answers state NOT_IMPLEMENTED with a message; every RPC of its API answers
UNIMPLEMENTED (the generated base servicers do exactly that).
"""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.adapters.host import HostConfig, ServiceHost, add_host_flags, run_service
from dockyard.core import logging
from dockyard.core.service import ServiceInfo, ServiceState


def main(
    service: str,
    grpc_port: int,
    description: str,
    services: list[tuple[Any, Any, str]],
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(
        prog=f"dockyard-{service}",
        description=f"{description} Not implemented yet: it serves health and System.Info only.",
    )
    add_host_flags(parser, service, grpc_port)
    args = parser.parse_args(argv)
    logging.configure(service)
    config = HostConfig.from_args(service, args)
    info = ServiceInfo(
        service=service,
        state=ServiceState.NOT_IMPLEMENTED,
        message=f"the {service} is not implemented yet; its RPCs answer UNIMPLEMENTED",
        node=config.node,
    )

    async def serve() -> None:  # gRPC's aio server must be built inside the running loop
        await ServiceHost(config, lambda: info, services).run()

    return run_service(service, serve)
