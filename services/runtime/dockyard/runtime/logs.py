"""Reading the logs conmon writes (the k8s-file format), with --follow, --since and --tail.

Each line of ``ctr.log`` is ``<RFC3339Nano time> <stdout|stderr> <F|P> <bytes>``: ``F`` ends a
line of the container's output (a newline follows it), ``P`` is a part of a longer one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

POLL_S = 0.05
READ_CHUNK = 1 << 16


def parse_line(line: bytes) -> tuple[str, bytes, str] | None:
    """One log line → (stream, data, time); None for a malformed line."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    time, stream, tag = parts[0], parts[1], parts[2]
    data = parts[3] if len(parts) == 4 else b""
    if tag == b"F":
        data += b"\n"
    return stream.decode(), data, time.decode()


def parse_time(text: str) -> datetime | None:
    """conmon's nanosecond RFC3339 → datetime (microseconds kept)."""
    try:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:] or "+00:00"
        return datetime.fromisoformat(f"{head}.{frac[:6].ljust(6, '0')}{zone.replace('Z', '+00:00')}")
    except ValueError:
        return None


def _lines(f: BinaryIO) -> Iterator[bytes]:
    """Complete lines from the current position; an unfinished last line is left unread."""
    buf = b""
    while True:
        chunk = f.read(READ_CHUNK)
        if not chunk:
            break
        buf += chunk
        *whole, buf = buf.split(b"\n")
        for line in whole:
            yield line + b"\n"
    if buf:
        f.seek(-len(buf), 1)


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


async def follow_log(
    path: Path, exited: asyncio.Event, *, follow: bool, since: datetime | None, tail: int
) -> AsyncIterator[tuple[str, bytes, str]]:
    """Entries of the log at ``path``; with ``follow``, new ones until ``exited`` is set.

    File reads run in a worker thread; the loop only sleeps between polls.
    """

    def keep(entry: tuple[str, bytes, str] | None) -> bool:
        if entry is None:
            return False
        if since is None:
            return True
        t = parse_time(entry[2])
        return t is None or t >= since

    def read_new(f: BinaryIO) -> list[tuple[str, bytes, str]]:
        return [e for e in map(parse_line, _lines(f)) if e is not None and keep(e)]

    f = await asyncio.to_thread(_open, path)
    while f is None:
        if not follow or exited.is_set():
            return
        await asyncio.sleep(POLL_S)
        f = await asyncio.to_thread(_open, path)
    try:
        first = await asyncio.to_thread(read_new, f)
        if tail > 0:
            first = list(deque(first, maxlen=tail))
        for entry in first:
            yield entry
        while follow:
            done = exited.is_set()  # read once more after the exit: the last lines may be new
            for entry in await asyncio.to_thread(read_new, f):
                yield entry
            if done:
                return
            await asyncio.sleep(POLL_S)
    finally:
        f.close()
