"""``dockyard exec``: run a command in a running container, joined to this terminal.

Exits with the command's code; 126/127 when it cannot be executed / is not found. ``-d`` starts
it and returns without waiting (the server keeps it running once the stream closes).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument(
        "--detach-keys", default=None, help="keys that detach from a TTY (default ctrl-p,ctrl-q)"
    )
    parser.add_argument("-u", "--user", default="", help="user[:group] to run as")
    parser.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")


def run(args: argparse.Namespace) -> int:
    from dockyard.api.containers.v1 import containers_pb2 as pb
    from dockyard.api.containers.v1 import containers_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.output import fail
    from dockyard.cli.spec import parse_env
    from dockyard.cli.stdio import DEFAULT_DETACH_KEYS, Session, parse_detach_keys, terminal_size
    from dockyard.client import exit_code
    from dockyard.client.calls import native
    from dockyard.core.errors import InvalidArgument

    if not args.argv:
        raise InvalidArgument("exec needs a command to run, e.g. dockyard exec -it CONTAINER sh")
    rows, cols = terminal_size() if args.tty else (0, 0)
    start = pb.ExecStart(
        container_id=args.container,
        command=args.argv,
        env=parse_env(args.env),
        tty=args.tty,
        user=args.user,
        workdir=args.workdir,
        interactive=args.interactive and not args.detach,
        rows=rows,
        cols=cols,
    )
    with channel(args.host) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        if args.detach:
            # Start it, close stdin, and leave once it answers (output, exit or error) or after 2 s.
            import threading

            responses = stub.Exec(iter([pb.ExecInput(start=start), pb.ExecInput(stdin_eof=True)]))
            first: list[BaseException] = []

            def started() -> None:
                try:
                    next(responses, None)
                except BaseException as exc:
                    first.append(exc)

            waiter = threading.Thread(target=started, daemon=True)
            waiter.start()
            waiter.join(2.0)
            responses.cancel()
            if first and not _cancelled(first[0]):
                raise first[0]
            return 0
        session = Session(
            lambda **kw: pb.ExecInput(**kw),
            pb.ExecInput(start=start),
            interactive=args.interactive,
            tty=args.tty,
            detach_keys=parse_detach_keys(
                DEFAULT_DETACH_KEYS if args.detach_keys is None else args.detach_keys
            ),
        )
        try:
            code = session.run(stub.Exec)
        except Exception as exc:
            status = fail(exc)
            mapped = exit_code(native(exc))
            return mapped if mapped != 125 else status
    return 0 if code is None else code


def _cancelled(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    return callable(code) and getattr(code(), "name", "") == "CANCELLED"
