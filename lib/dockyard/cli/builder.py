"""``dockyard builder prune``: drop the build cache, as ``docker builder prune`` does.

Removes the builder's step-cache entries and the volumes of ``RUN --mount=type=cache`` (those no
container uses) not used for the ``--filter until=DURATION`` given, else all of them; asks y/N
unless ``-f``. ``-a`` is accepted for docker's habits (there is no "dangling" cache here).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    summary = "Remove the build cache (step cache entries and cache mounts)"
    p = sub.add_parser("prune", help=summary, description=summary)
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("-a", "--all", action="store_true", help="accepted: all cache is pruned")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="until=DURATION",
        help="keep what was used within DURATION (e.g. 24h)",
    )


def keep_seconds(filters: list[str]) -> int:
    """``--filter until=DURATION`` as seconds (0: prune everything); InvalidArgument otherwise."""
    from dockyard.cli.health_restart import parse_duration
    from dockyard.core.errors import InvalidArgument

    keep = 0
    for item in filters:
        key, sep, value = item.partition("=")
        if key != "until" or not sep:
            raise InvalidArgument(f"invalid filter {item!r}: only until=DURATION is supported")
        keep = parse_duration(value, "until") // 1_000_000_000
    return keep


def run(args: argparse.Namespace) -> int:
    from dockyard.api.builds.v1 import builds_pb2 as pb
    from dockyard.api.builds.v1 import builds_pb2_grpc
    from dockyard.cli.client import channel
    from dockyard.cli.human import confirm

    keep = keep_seconds(args.filter)
    if not args.force and not confirm(
        "WARNING! This will remove the build cache.\nAre you sure you want to continue?"
    ):
        return 0
    with channel(args.host) as ch:
        result = builds_pb2_grpc.BuildsStub(ch).PruneCache(pb.PruneCacheRequest(keep_seconds=keep))
    print(f"Removed {result.entries_removed} cache entries and {result.cache_mounts_removed} cache mounts")
    return 0
