"""dockyard-runtime: the per-node runtime (images, containers). A stub until it is written."""

from __future__ import annotations

import sys

from dockyard.adapters import stub
from dockyard.api.containers.v1 import containers_pb2, containers_pb2_grpc
from dockyard.api.images.v1 import images_pb2, images_pb2_grpc

GRPC_PORT = 7072


def main(argv: list[str] | None = None) -> int:
    return stub.main(
        "runtime",
        GRPC_PORT,
        "Runs containers rootless on this node: image store, fuse-overlayfs rootfs, runc.",
        [
            (
                images_pb2_grpc.add_ImagesServicer_to_server,
                images_pb2_grpc.ImagesServicer(),
                images_pb2.DESCRIPTOR.services_by_name["Images"].full_name,
            ),
            (
                containers_pb2_grpc.add_ContainersServicer_to_server,
                containers_pb2_grpc.ContainersServicer(),
                containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name,
            ),
        ],
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
