"""``dockyard system df``: the disk used by images and containers (``-v``: per image).
``dockyard system prune``: docker's clean-up of stopped containers, unused networks, dangling
images (``-a``: every unused one) and the build cache (``--volumes``: unused anonymous volumes).
``dockyard system events`` and ``system info`` are the top-level ``events`` and ``info``.
``dockyard system delegate USER`` (root): give USER its own cgroup subtree, so its platform can
enforce resource limits and pause (:mod:`dockyard.core.cgroups` describes the layout)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    df = sub.add_parser("df", help="show disk usage", description="Show disk usage of images and containers")
    df.add_argument("-v", "--verbose", action="store_true", help="one row per image and container")
    df.add_argument("--format", choices=("table", "json"), default="table", help="json: one object a line")
    prune = sub.add_parser("prune", help="remove unused data", description="Remove unused data")
    prune.add_argument("-a", "--all", action="store_true", help="every unused image, not only dangling ones")
    prune.add_argument("--volumes", action="store_true", help="unused anonymous volumes too")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    for name, module in (("events", "events"), ("info", "info")):  # docker's system events / info
        nested = sub.add_parser(name, help=f"the same as `dockyard {name}`")
        nested.set_defaults(action_module=module)
        importlib.import_module(f"dockyard.cli.{module}").add_arguments(nested)
    delegate = sub.add_parser(
        "delegate",
        help="as root: give USER its own cgroup subtree (resource limits, pause); idempotent",
        description="As root: make /sys/fs/cgroup/<hierarchy>/dockyard/USER (cgroup v1, in every "
        "hierarchy) or /sys/fs/cgroup/dockyard/USER with its controllers enabled (v2), owned by USER, "
        "so the platform USER runs can enforce resource limits and pause. `make setup` does this for "
        "every member of the dockyard group. cgroupfs is not persistent: run it again after a reboot.",
    )
    delegate.add_argument("user", metavar="USER", help="the user whose platform gets the subtree")
    delegate.add_argument("--cgroup-root", type=Path, default=None, help=argparse.SUPPRESS)  # tests


def delegate(args: argparse.Namespace) -> int:
    """One line per change (or one saying all was in place); one line on stderr, exit 1, when it cannot."""
    import pwd

    from dockyard.core import cgroups

    def refuse(why: str) -> int:
        print(f"dockyard system delegate: {why}", file=sys.stderr)
        return 1

    if os.geteuid() != 0:
        return refuse(f"must run as root (try: sudo dockyard system delegate {args.user})")
    try:
        pwd.getpwnam(args.user)
    except KeyError:
        return refuse(f"no such user {args.user!r}")
    root = args.cgroup_root or cgroups.CGROUP_ROOT
    try:
        done = cgroups.delegate(args.user, root)
    except cgroups.DelegationError as exc:
        return refuse(str(exc))
    for line in done.actions:
        print(line)
    for line in done.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if not done.actions:
        print(f"{root}/…/{cgroups.user_subtree(args.user)} is already {args.user}'s: nothing to do")
    return 0


def percent(part: int, whole: int) -> str:
    return f" ({round(100 * part / whole)}%)" if whole else ""


def summary(usage: Any, running: int) -> list[dict[str, str]]:
    """The TYPE rows of ``docker system df`` from a DiskUsageResponse and the running count."""
    from dockyard.cli.human import human_size

    active = [i for i in usage.images if i.containers > 0]
    reclaimable = sum(i.unique_size for i in usage.images if i.containers == 0)
    # The API gives one total for containers' writable layers: all of it is reclaimable only
    # when nothing runs.
    c_reclaim = usage.containers_size if running == 0 else 0
    rows = [
        {
            "Type": "Images",
            "TotalCount": str(len(usage.images)),
            "Active": str(len(active)),
            "Size": human_size(usage.images_size),
            "Reclaimable": human_size(reclaimable) + percent(reclaimable, usage.images_size),
        },
        {
            "Type": "Containers",
            "TotalCount": str(usage.containers),
            "Active": str(running),
            "Size": human_size(usage.containers_size),
            "Reclaimable": human_size(c_reclaim) + percent(c_reclaim, usage.containers_size),
        },
    ]
    for kind, build_cache in (("Local Volumes", False), ("Build Cache", True)):
        volumes = [v for v in usage.volumes if v.build_cache == build_cache]
        size = sum(v.size for v in volumes)
        unused = sum(v.size for v in volumes if v.containers == 0)
        rows.append(
            {
                "Type": kind,
                "TotalCount": str(len(volumes)),
                "Active": str(sum(1 for v in volumes if v.containers > 0)),
                "Size": human_size(size),
                "Reclaimable": human_size(unused) + percent(unused, size),
            }
        )
    return rows


def prune(args: argparse.Namespace) -> int:
    """Ask y/N unless -f, then prune each kind as docker does and report what went."""
    from dockyard.api.builds.v1 import builds_pb2, builds_pb2_grpc
    from dockyard.cli.human import confirm, human_size
    from dockyard.client import Client
    from dockyard.core.errors import FailedPrecondition, NotFound

    kinds = [
        "all stopped containers",
        "all networks not used by at least one container",
        *(["all anonymous volumes not used by at least one container"] if args.volumes else []),
        "all images without at least one container associated to them" if args.all else "all dangling images",
        "unused build cache",
    ]
    listing = "".join(f"  - {kind}\n" for kind in kinds)
    if not args.force and not confirm(
        f"WARNING! This will remove:\n{listing}\nAre you sure you want to continue?"
    ):
        return 0
    reclaimed = 0
    with Client(args.host) as client:
        containers = client.containers.prune()
        reclaimed += containers.space_reclaimed
        _report("Deleted Containers:", containers.deleted)
        _report("Deleted Networks:", client.networks.prune().deleted)
        if args.volumes:  # docker's since API 1.42: named volumes are the user's data and stay
            gone = []
            for volume in client.volumes.list(filters=["dangling=true"]):
                if volume.anonymous:
                    with contextlib.suppress(NotFound, FailedPrecondition):  # taken since the listing
                        client.volumes.remove(volume.name)
                        gone.append(volume.name)
            _report("Deleted Volumes:", gone)
        images = client.images.prune(all=args.all)
        reclaimed += images.space_reclaimed
        _report("Deleted Images:", [f"deleted: {i}" for i in images.deleted])
        cache = builds_pb2_grpc.BuildsStub(client.channel).PruneCache(builds_pb2.PruneCacheRequest())
        reclaimed += cache.space_reclaimed
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def _report(heading: str, items: Any) -> None:
    if items:
        print(heading)
        for item in items:
            print(item)
        print()


def run(args: argparse.Namespace) -> int:
    if args.action == "delegate":
        return delegate(args)
    if args.action == "prune":
        return prune(args)
    if args.action in ("events", "info"):
        code: int = importlib.import_module(f"dockyard.cli.{args.action_module}").run(args)
        return code
    from dockyard.api.containers.v1 import containers_pb2, containers_pb2_grpc
    from dockyard.api.images.v1 import images_pb2, images_pb2_grpc
    from dockyard.cli import human
    from dockyard.cli.client import channel, list_all
    from dockyard.cli.output import table

    with channel(args.host) as ch:
        usage = images_pb2_grpc.ImagesStub(ch).DiskUsage(images_pb2.DiskUsageRequest())
        listing = list_all(
            containers_pb2_grpc.ContainersStub(ch).List,
            containers_pb2.ListContainersRequest(all=True),
            "containers",
        )
    running = sum(1 for c in listing if human.state_name(c.state) in ("running", "paused"))
    rows = summary(usage, running)
    if args.format == "json":
        for r in rows:
            print(human.json_line(r))
        return 0
    if not args.verbose:
        keys = ("Type", "TotalCount", "Active", "Size", "Reclaimable")
        table(("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"), [[r[k] for k in keys] for r in rows])
        return 0
    print("Images space usage:\n")
    image_rows = []
    for u in usage.images:
        names = [human.split_repo_tag(t) for t in u.image.repo_tags] or [(human.NONE, human.NONE)]
        for repo, tag in names:
            image_rows.append(
                (
                    repo,
                    tag,
                    human.short_id(u.image.id),
                    human.ago(human.epoch(u.image.created)),
                    human.human_size(u.image.size),
                    human.human_size(u.shared_size),
                    human.human_size(u.unique_size),
                    u.containers,
                )
            )
    table(
        ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"),
        image_rows,
    )
    print("\nContainers space usage:\n")
    from dockyard.cli.ps import row

    ckeys = ("ID", "Image", "Command", "RunningFor", "Status", "Names")
    table(
        ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"),
        [[row(c)[k] for k in ckeys] for c in listing],
    )
    print("\nLocal Volumes space usage:\n")
    table(
        ("VOLUME NAME", "LINKS", "SIZE"),
        [(v.name, v.containers, human.human_size(v.size)) for v in usage.volumes if not v.build_cache],
    )
    print("\nBuild cache usage (RUN --mount=type=cache):\n")
    table(
        ("VOLUME NAME", "LINKS", "SIZE"),
        [(v.name, v.containers, human.human_size(v.size)) for v in usage.volumes if v.build_cache],
    )
    return 0
