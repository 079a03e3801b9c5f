"""dockyard-builder: Dockerfiles to images, each step an image in a runtime node's store.

Every flag has an environment variable (``DOCKYARD_BUILDER_<FLAG>``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dockyard.adapters.host import HostConfig, add_host_flags, backend_socket, run_service
from dockyard.builder.download import MAX_DOWNLOAD
from dockyard.core import logging

GRPC_PORT = 7073


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard-builder",
        description="Builds images from Dockerfiles; RUN steps are containers on a runtime node.",
    )
    add_host_flags(parser, "builder", GRPC_PORT)
    parser.add_argument(
        "--runtime",
        default=os.environ.get("DOCKYARD_BUILDER_RUNTIME", ""),
        help="the runtime node's gRPC address [DOCKYARD_BUILDER_RUNTIME, default "
        "unix:<state-dir>/../sockets/runtime.sock]",
    )
    parser.add_argument(
        "--max-download",
        type=int,
        default=int(os.environ.get("DOCKYARD_BUILDER_MAX_DOWNLOAD") or MAX_DOWNLOAD),
        help=f"bytes one ADD <url> may fetch [DOCKYARD_BUILDER_MAX_DOWNLOAD, default {MAX_DOWNLOAD}]",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.configure("builder")
    host = HostConfig.from_args("builder", args)
    runtime = args.runtime or backend_socket(Path(args.state_dir).resolve().parent, "runtime")

    async def serve() -> None:  # gRPC's aio server must be built inside the running loop
        from dockyard.builder import app

        await app.build(app.BuilderConfig(host, runtime, args.max_download)).run()

    return run_service("builder", serve)


if __name__ == "__main__":
    sys.exit(main())
