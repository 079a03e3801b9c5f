"""``dockyard container ACTION``: docker's management form of the container verbs.

Each action is the top-level verb's module (``container ls`` is ``ps``); ``prune`` lives here.
"""

from __future__ import annotations

import argparse
import importlib

ACTIONS: dict[str, tuple[str, str]] = {
    "ls": ("ps", "List containers"),
    "create": ("create", "Create a container"),
    "run": ("run", "Create and run a container"),
    "start": ("start", "Start stopped containers"),
    "stop": ("stop", "Stop running containers"),
    "restart": ("restart", "Restart containers"),
    "kill": ("kill", "Send a signal to containers"),
    "rm": ("rm", "Remove containers"),
    "logs": ("logs", "Show a container's output"),
    "exec": ("exec", "Run a command in a running container"),
    "attach": ("attach", "Attach this terminal to a running container"),
    "wait": ("wait", "Wait for containers to exit, print their exit codes"),
    "commit": ("commit", "Make an image from a container's changes"),
    "diff": ("diff", "Show changed files of a container"),
    "cp": ("cp", "Copy files between a container and this machine"),
    "top": ("top", "Show a container's processes"),
    "pause": ("pause", "Pause containers"),
    "unpause": ("unpause", "Unpause containers"),
    "rename": ("rename", "Rename a container"),
    "port": ("port", "Show a container's published ports"),
    "update": ("update", "Change containers' resource limits"),
    "stats": ("stats", "Live resource usage of containers"),
    "inspect": ("inspect", "Show containers in detail (JSON)"),
    "prune": ("container", "Remove every stopped container"),
}


def add_nested(parser: argparse.ArgumentParser, actions: dict[str, tuple[str, str]], owner: str) -> None:
    """Subcommands whose flags come from each action's own module (all stdlib at import)."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, (module, summary) in actions.items():
        cmd = sub.add_parser(name, help=summary, description=summary)
        cmd.set_defaults(action_module=module)
        if module == owner:
            add_prune_arguments(cmd, owner)
        else:
            importlib.import_module(f"dockyard.cli.{module}").add_arguments(cmd)


def run_nested(args: argparse.Namespace, owner: str) -> int:
    if args.action_module == owner:
        return prune(args, owner)
    code: int = importlib.import_module(f"dockyard.cli.{args.action_module}").run(args)
    return code


def add_prune_arguments(parser: argparse.ArgumentParser, owner: str) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    if owner == "image":
        parser.add_argument("-a", "--all", action="store_true", help="every image no container uses")


def prune(args: argparse.Namespace, owner: str) -> int:
    """``container prune`` / ``image prune``: ask y/N unless -f, then report like docker."""
    from dockyard.cli.client import channel
    from dockyard.cli.human import confirm, human_size

    if owner == "image":
        what = (
            "all images without at least one container associated to them"
            if args.all
            else "all dangling images"
        )
    else:
        what = "all stopped containers"
    if not args.force and not confirm(
        f"WARNING! This will remove {what}.\nAre you sure you want to continue?"
    ):
        return 0
    with channel(args.host) as ch:
        if owner == "image":
            from dockyard.api.images.v1 import images_pb2, images_pb2_grpc

            result = images_pb2_grpc.ImagesStub(ch).Prune(images_pb2.PruneImagesRequest(all=args.all))
            heading, prefix = "Deleted Images:", "deleted: "
        else:
            from dockyard.api.containers.v1 import containers_pb2, containers_pb2_grpc

            result = containers_pb2_grpc.ContainersStub(ch).Prune(containers_pb2.PruneContainersRequest())
            heading, prefix = "Deleted Containers:", ""
    if result.deleted:
        print(heading)
        for item in result.deleted:
            print(f"{prefix}{item}")
        print()
    print(f"Total reclaimed space: {human_size(result.space_reclaimed)}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_nested(parser, ACTIONS, "container")


def run(args: argparse.Namespace) -> int:
    if args.action == "inspect":
        args.inspect_kind = "container"
    return run_nested(args, "container")
