"""``dockyard version``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from dockyard.core.service import VERSION

    print(f"dockyard {VERSION}")
    return 0
