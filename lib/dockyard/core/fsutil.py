"""Small filesystem facts every durable write in Dockyard relies on."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path | str) -> None:
    """Make a rename or create inside ``path`` durable (the entry, not just the file's bytes)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
