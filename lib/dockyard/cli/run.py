"""``dockyard run``: create a container, start it, and stay attached to it until it exits.

Exit status is docker's: the container's own code; 125 when the platform fails before the
container runs (no such image, a bad flag the server refuses); 126/127 when its command cannot be
executed / is not found (the error's reason says which). ``-d`` prints the id and returns.
``--rm`` is done by the server. The pull of a missing image (``--pull missing``, docker's default:
when its name says which registry holds it), ``--pull always`` and the exit codes are the client
library's (``dockyard.client``); this module parses the flags, prints, and runs the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from dockyard.cli import spec

if TYPE_CHECKING:
    from dockyard.client import PullProgress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    parser.add_argument(
        "--detach-keys", default=None, help="keys that detach from a TTY (default ctrl-p,ctrl-q)"
    )
    parser.add_argument(
        "--pull",
        choices=("missing", "always", "never"),
        default="missing",
        help="pull the image first: missing (default), always, never",
    )
    spec.add_arguments(parser)


class _PullPrinter:
    """A pull ``run`` does, as ``dockyard pull`` shows it, on stderr (stdout is the container's):
    docker's "Unable to find image" first when the pull is for a missing image."""

    def __init__(self, image: str, missing: bool) -> None:
        from dockyard.cli.progress import ProgressView

        self.view = ProgressView(sys.stderr)
        self.heading = f"Unable to find image '{image}' locally" if missing else ""

    def __call__(self, p: PullProgress) -> None:
        if self.heading:
            print(self.heading, file=sys.stderr)
            self.heading = ""
        self.view.update(p.id, p.status, p.current, p.total)


def attach(
    ch: Any, container_id: str, *, interactive: bool, tty: bool, start: bool, detach_keys: str | None = None
) -> int | None:
    """Attach to ``container_id`` (starting it when ``start``) until it exits; its exit code, or
    None when detached (``detach_keys``: docker's ``--detach-keys``, default Ctrl-P Ctrl-Q).
    gRPC errors propagate."""
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.stdio import DEFAULT_DETACH_KEYS, Session, parse_detach_keys, terminal_size

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
        lambda **kw: pb.AttachInput(**kw),
        first,
        interactive=interactive,
        tty=tty,
        on_interrupt=interrupt,
        detach_keys=parse_detach_keys(DEFAULT_DETACH_KEYS if detach_keys is None else detach_keys),
    )
    return session.run(stub.Attach)


def run(args: argparse.Namespace) -> int:
    from dockyard.cli.output import fail
    from dockyard.client import Client, exit_code
    from dockyard.client.calls import native

    try:
        if args.detach_keys is not None:
            from dockyard.cli.stdio import parse_detach_keys

            parse_detach_keys(args.detach_keys)  # a bad one is refused before anything is made
        request = spec.build_spec(args)
    except Exception as exc:
        fail(exc)
        return 125
    try:
        client = Client(args.host)
    except Exception as exc:
        fail(exc)
        return 125
    with client:
        try:
            container = client.containers.create_from_spec(
                request, pull=args.pull, on_pull=_PullPrinter(args.image, args.pull == "missing")
            )
        except Exception as exc:
            fail(exc)
            return 125
        try:
            if args.detach:
                client.containers.start(container.id)
                print(container.id)
                return 0
            code = attach(
                client.channel,
                container.id,
                interactive=args.interactive,
                tty=args.tty,
                start=True,
                detach_keys=args.detach_keys,
            )
        except Exception as exc:
            fail(exc)
            return exit_code(native(exc))
    return 0 if code is None else code
