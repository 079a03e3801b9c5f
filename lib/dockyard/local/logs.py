"""Size-rotated log files for what ``dockyard up``'s children write.

Each child's stdout and stderr go to a pipe the supervisor reads and appends here, so a child
that logs in a loop (a service under attack, a crash loop) fills at most ``max_bytes x files``
of disk::

    <state-dir>/logs/
      registry.log      the current file, at most max_bytes
      registry.log.1    the one before it
      registry.log.2    … up to files - 1 old ones; the oldest is dropped

``DOCKYARD_LOG_MAX_BYTES`` (default 10 MiB) and ``DOCKYARD_LOG_FILES`` (default 3) change the
limits, as do ``dockyard up --log-max-bytes/--log-files``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_FILES = 3


@dataclass(frozen=True, slots=True)
class Rotation:
    max_bytes: int = DEFAULT_MAX_BYTES
    files: int = DEFAULT_FILES  # the current one included

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise ValueError(f"log size limit {self.max_bytes} is below 1024 bytes")
        if self.files < 1:
            raise ValueError(f"log file count {self.files} is below 1")

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Rotation:
        return cls(
            max_bytes=int(environ.get("DOCKYARD_LOG_MAX_BYTES") or DEFAULT_MAX_BYTES),
            files=int(environ.get("DOCKYARD_LOG_FILES") or DEFAULT_FILES),
        )


class RotatingLog:
    """An append-only file that moves aside when the next write would pass ``max_bytes``.

    Writes go straight to the file descriptor (no buffer: the tail is readable at once, and a
    crash loses nothing written). A single write larger than the limit is cut into pieces, so
    no file ever exceeds it.
    """

    def __init__(self, path: Path, rotation: Rotation) -> None:
        self.path = path
        self.rotation = rotation
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def write(self, data: bytes) -> None:
        limit = self.rotation.max_bytes
        while data:
            if self._size >= limit or (self._size and self._size + len(data) > limit and len(data) <= limit):
                self._rotate()
            piece, data = data[: limit - self._size], data[limit - self._size :]
            view = memoryview(piece)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._size += len(piece)

    def _rotate(self) -> None:
        os.close(self._fd)
        keep = self.rotation.files
        if keep == 1:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n - 1}") if n > 1 else self.path
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n}"))
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
