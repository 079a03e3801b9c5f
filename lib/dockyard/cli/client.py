"""The CLI's ``-H`` and TLS flags; the connection itself is the client library's
(:mod:`dockyard.client.connection`)."""

from __future__ import annotations

import argparse
import os

from dockyard.client.connection import Endpoint, channel, client_tls, list_all, resolve

__all__ = ["Endpoint", "add_flags", "channel", "endpoint", "list_all"]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """-H and docker's TLS flags, on the top-level parser."""
    parser.add_argument(
        "-H",
        "--host",
        default=os.environ.get("DOCKYARD_HOST"),
        help="gateway: unix:///path, tcp://host:port or host:port [DOCKYARD_HOST, default the first "
        "you may use of $XDG_RUNTIME_DIR/dockyard/dockyard.sock, <state-dir>/dockyard.sock, "
        "/run/dockyard/dockyard.sock]",
    )
    parser.add_argument(
        "--tlsverify",
        action="store_true",
        default=os.environ.get("DOCKYARD_TLS_VERIFY", "") not in ("", "0", "false"),
        help="TCP: use TLS, verify the gateway, present a client certificate [DOCKYARD_TLS_VERIFY]",
    )
    for flag, name in (("--tlscacert", "ca.pem"), ("--tlscert", "cert.pem"), ("--tlskey", "key.pem")):
        parser.add_argument(flag, help=f"PEM file (implies TLS) [default $DOCKYARD_CERT_PATH/{name}]")


def endpoint(args: argparse.Namespace) -> Endpoint:
    """The gateway ``args`` point at (flags, then environment, then the local sockets)."""
    return resolve(args.host, client_tls(args.tlsverify, args.tlscacert, args.tlscert, args.tlskey))
