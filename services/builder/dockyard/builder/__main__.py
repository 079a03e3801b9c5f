"""dockyard-builder: Dockerfile to OCI image. A stub until it is written."""

from __future__ import annotations

import sys

from dockyard.adapters import stub
from dockyard.api.builds.v1 import builds_pb2, builds_pb2_grpc

GRPC_PORT = 7073


def main(argv: list[str] | None = None) -> int:
    return stub.main(
        "builder",
        GRPC_PORT,
        "Builds images from Dockerfiles (BuildKit dialect), RUN steps as containers on a runtime.",
        [
            (
                builds_pb2_grpc.add_BuildsServicer_to_server,
                builds_pb2_grpc.BuildsServicer(),
                builds_pb2.DESCRIPTOR.services_by_name["Builds"].full_name,
            )
        ],
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
