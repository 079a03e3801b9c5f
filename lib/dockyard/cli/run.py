"""``dockyard run``: create a container, start it, and stay attached to it until it exits.

Exit status is docker's: the container's own code; 125 when the platform fails before the
container runs (no such image, a bad flag the server refuses); 126/127 when its command cannot be
executed / is not found. ``-d`` prints the id and returns. ``--rm`` is done by the server.
An image that is not on the node is pulled first when its name says which registry holds it
(``--pull missing``, docker's default); ``--pull always`` pulls every time, ``never`` never.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from dockyard.cli import spec
from dockyard.core.names import names_registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    parser.add_argument(
        "--pull",
        choices=("missing", "always", "never"),
        default="missing",
        help="pull the image first: missing (default), always, never",
    )
    spec.add_arguments(parser)


def _pull(args: argparse.Namespace) -> None:
    from dockyard.cli import pull

    pull_args = argparse.Namespace(
        host=args.host, reference=args.image, quiet=False, platform="", tls_verify=True
    )
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the container's
        pull.run(pull_args)


def attach(ch: Any, container_id: str, *, interactive: bool, tty: bool, start: bool) -> int | None:
    """Attach to ``container_id`` (starting it when ``start``) until it exits; its exit code, or
    None when detached. gRPC errors propagate."""
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.stdio import Session, terminal_size

    stub = containers_pb2_grpc.ContainersStub(ch)
    rows, cols = terminal_size() if tty else (0, 0)
    first = pb.AttachInput(
        start=pb.AttachStart(
            container_id=container_id, stdin=interactive, start=start, wait=True, rows=rows, cols=cols
        )
    )

    def interrupt() -> None:
        # The container may be gone already; the stream tells the rest.
        with contextlib.suppress(Exception):
            stub.Kill(pb.KillContainerRequest(id=container_id, signal="INT"))

    session = Session(
        lambda **kw: pb.AttachInput(**kw), first, interactive=interactive, tty=tty, on_interrupt=interrupt
    )
    return session.run(stub.Attach)


def run(args: argparse.Namespace) -> int:
    import grpc

    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import fail
    from dockyard.cli.stdio import exit_code_for_start_error

    try:
        request = pb.CreateContainerRequest(spec=spec.build_spec(args))
    except Exception as exc:
        fail(exc)
        return 125
    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        try:
            if args.pull == "always":
                _pull(args)
            try:
                container = stub.Create(request)
            except grpc.RpcError as exc:
                missing = exc.code() == grpc.StatusCode.NOT_FOUND and "no such image" in _details(exc)
                if not (missing and args.pull == "missing" and names_registry(args.image)):
                    raise
                print(f"Unable to find image '{args.image}' locally", file=sys.stderr)
                _pull(args)
                container = stub.Create(request)
        except Exception as exc:
            fail(exc)
            return 125
        if args.detach:
            try:
                stub.Start(pb.StartContainerRequest(id=container.id))
            except Exception as exc:
                fail(exc)
                return exit_code_for_start_error(str(_details(exc)))
            print(container.id)
            return 0
        try:
            code = attach(ch, container.id, interactive=args.interactive, tty=args.tty, start=True)
        except Exception as exc:
            fail(exc)
            return exit_code_for_start_error(str(_details(exc)))
    return 0 if code is None else code


def _details(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    return str(details() if callable(details) else exc)
