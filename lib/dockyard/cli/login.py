"""``dockyard login``: check credentials against a registry; the node keeps them for pull/push.

The password comes from ``-p`` (visible to other users in ``ps``: prefer the others), from stdin
with ``--password-stdin``, or from a prompt. The username from ``-u`` or a prompt.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dockyard.cli.pull import add_tls_verify

    parser.add_argument("-u", "--username", default="")
    parser.add_argument("-p", "--password", default=None)
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_tls_verify(parser)
    parser.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")


def run(args: argparse.Namespace) -> int:
    import getpass
    import sys

    from dockyard.api.images.v1 import images_pb2 as pb
    from dockyard.api.images.v1 import images_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.core.errors import InvalidArgument

    password = args.password
    if args.password_stdin:
        if password is not None:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise InvalidArgument("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise InvalidArgument("no username: use -u, or run on a terminal to be asked")
        username = input("Username: ").strip()
    if password is None:
        if not sys.stdin.isatty():
            raise InvalidArgument("no password: use --password-stdin, or run on a terminal to be asked")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("a username and a password are required")
    request = pb.LoginRequest(
        registry=args.server, username=username, password=password, insecure=not args.tls_verify
    )
    with channel(args.host) as ch:
        images_pb2_grpc.ImagesStub(ch).Login(request)
    print("Login Succeeded")
    return 0
