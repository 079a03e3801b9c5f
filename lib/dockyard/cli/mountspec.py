"""``--mount`` and ``--volumes-from`` of ``create``/``run``: docker's syntax, into ContainerSpec mounts.

``--mount type=volume|bind|tmpfs,source=…,target=…[,readonly][,…]`` (comma-separated, fields may
be quoted as CSV; ``type`` defaults to volume, ``src``/``source``, ``dst``/``destination``/``target``,
``ro``/``readonly`` take an optional ``=true|false``). Keys by type: ``volume-nocopy`` (volume),
``tmpfs-size`` (bytes, or with a k/m/g suffix) and ``tmpfs-mode`` (octal) (tmpfs),
``bind-propagation=rprivate`` (bind; the only propagation there is here), ``consistency``
(ignored, as docker does on Linux). A mistake is InvalidArgument with one line naming the flag.

``--volumes-from CONTAINER[:ro|rw]`` passes through; the runtime resolves it at create.
Standard library only, as every CLI module at import time.
"""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.client.grammar import parse_mount


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="type=volume|bind|tmpfs,source=…,target=…",
        help="attach a filesystem mount (docker's --mount syntax)",
    )
    parser.add_argument(
        "--volumes-from",
        action="append",
        default=[],
        metavar="CONTAINER[:ro|rw]",
        help="mount every volume and bind of another container",
    )


def apply(args: argparse.Namespace, spec: Any) -> None:
    """Add ``--mount`` and ``--volumes-from`` to the ContainerSpec ``spec``."""
    from dockyard.client.types import add_to_spec

    for item in args.mount:
        add_to_spec(spec, parse_mount(item))
    for item in args.volumes_from:
        ref, _, mode = item.partition(":")
        if not ref or mode not in ("", "ro", "rw"):
            from dockyard.core.errors import InvalidArgument

            raise InvalidArgument(f"invalid --volumes-from {item!r}: expected CONTAINER[:ro|rw]")
        spec.volumes_from.append(item)
