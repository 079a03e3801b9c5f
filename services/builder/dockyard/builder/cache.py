"""The build cache: a step's key → the image the step made (an image of the runtime's store).

A key is the sha256 of everything the step's result depends on (see ``engine.py``): the parent
image id (itself content-addressed, so the whole chain before the step), the instruction after
expansion, and the digest of the bytes it reads (a COPY layer's reproducible tar, a COPY
--from stage's image id), the RUN's environment and the SOURCE_DATE_EPOCH. The same key means
the same image, so a hit costs one Inspect to check the image is still in the store.

On disk, written whole (tmp + rename) after each new entry::

    <state>/cache.json     {"entries": {"<key hex>": {"image": "sha256:…", "used": <unix time>}}}
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any


def step_key(*parts: str) -> str:
    """One key from the parts (each length-prefixed, so no two lists give the same bytes)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


class BuildCache:
    """Key → image id, persisted; safe to use from several threads and tasks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        try:
            doc = json.loads(path.read_bytes())
            self._entries = dict(doc.get("entries", {}))
        except (OSError, ValueError, AttributeError):
            self._entries = {}

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            return str(entry["image"]) if entry else None

    def put(self, key: str, image: str) -> None:
        with self._lock:
            self._entries[key] = {"image": image, "used": int(time.time())}
            self._save()

    def touch(self, key: str) -> None:
        with self._lock:
            if key in self._entries:
                self._entries[key]["used"] = int(time.time())

    def drop(self, key: str) -> None:
        with self._lock:
            if self._entries.pop(key, None) is not None:
                self._save()

    def prune(self, keep_seconds: int) -> int:
        """Drop entries not used in ``keep_seconds`` (all when 0); how many were dropped."""
        with self._lock:
            now = time.time()
            doomed = [
                k for k, e in self._entries.items() if not keep_seconds or now - e["used"] > keep_seconds
            ]
            for k in doomed:
                del self._entries[k]
            self._save()
            return len(doomed)

    def flush(self) -> None:
        with self._lock:
            self._save()

    def __len__(self) -> int:
        return len(self._entries)

    def _save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"entries": self._entries}, sort_keys=True))
        os.replace(tmp, self.path)
