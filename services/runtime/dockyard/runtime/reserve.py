"""A few MiB held back on the state directory's filesystem, so stopping still works when it is full.

A container can fill the filesystem its writable layer shares with the runtime's state. Stopping
it then still needs a little space: conmon writes the exit code to a new file (and exits without
reporting it when it cannot), the record is rewritten. ``release_if_full`` gives the reserve back
just before a kill, stop or rm on a full disk; ``ensure`` takes it again once there is room.

On disk::

    <state>/runtime/space-reserve    RESERVE_BYTES, allocated (not sparse)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

from dockyard.core.fsutil import FULL_ERRNOS

log = structlog.get_logger(__name__)

RESERVE_BYTES = 4 << 20


class SpaceReserve:
    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def held(self) -> bool:
        try:
            return self.path.stat().st_blocks * 512 >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> None:
        """Allocate the reserve if it is missing and there is room for it and as much again."""
        if self.held():
            return
        try:
            if self.free_bytes() < 2 * self.size:
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            self.path.unlink(missing_ok=True)  # a partial reserve would only pretend

    def release_if_full(self) -> None:
        """Give the reserve back when less than its size is free; a no-op otherwise."""
        with contextlib.suppress(OSError):
            if self.free_bytes() >= self.size:
                return
        if self.path.exists():
            self.path.unlink(missing_ok=True)
            log.warning("disk full: released the runtime's space reserve to stop containers")
