"""``dockyard image ACTION``: docker's management form of the image verbs (``image rm`` is ``rmi``)."""

from __future__ import annotations

import argparse

from dockyard.cli.container import add_nested, run_nested

ACTIONS: dict[str, tuple[str, str]] = {
    "ls": ("images", "List images"),
    "pull": ("pull", "Pull an image from a registry"),
    "push": ("push", "Push an image to a registry"),
    "tag": ("tag", "Give an image another name"),
    "rm": ("rmi", "Remove images"),
    "prune": ("image", "Remove unused images"),
    "history": ("history", "Show the layers of an image"),
    "inspect": ("inspect", "Show images in detail (JSON)"),
    "import": ("import_", "Make an image from a tarball"),
    "save": ("save", "Write images to a tar archive"),
    "load": ("load", "Read images from a tar archive"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_nested(parser, ACTIONS, "image")


def run(args: argparse.Namespace) -> int:
    if args.action == "inspect":
        args.inspect_kind = "image"
    return run_nested(args, "image")
