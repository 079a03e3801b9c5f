"""Adapting streams of byte chunks (gRPC request streams) to the file objects tarfile wants."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any


class ChunkReader(io.RawIOBase):
    """A readable, unseekable file over an iterable of byte chunks; holds one chunk at a time.

    Wrap it in ``io.BufferedReader`` (or hand it to ``tarfile.open(mode="r|*")``) to read it.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = next(self._it, None)
            if chunk is None:
                return 0
            self._pending = bytes(chunk)
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
