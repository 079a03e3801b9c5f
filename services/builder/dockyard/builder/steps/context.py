"""What a step needs from the build running it (``engine._Build`` provides it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from dockyard.builder.mounts import CacheVolumes
from dockyard.builder.node import Image, Runtime


class StepContext(Protocol):
    @property
    def rt(self) -> Runtime: ...

    @property
    def epoch(self) -> int:
        """SOURCE_DATE_EPOCH: every history entry's time and every layer's mtime clamp."""
        ...

    @property
    def context(self) -> Path:
        """The build context, unpacked."""
        ...

    @property
    def secrets(self) -> Mapping[str, bytes]: ...

    @property
    def max_download(self) -> int:
        """The bytes one ``ADD <url>`` may fetch."""
        ...

    @property
    def scratch(self) -> Path: ...

    @property
    def cache_volumes(self) -> CacheVolumes: ...

    async def lookup(self, key: str) -> Image | None:
        """The cached image of the step ``key``, or None (always None with ``--no-cache``)."""
        ...

    def remember(self, key: str, image: Image) -> None:
        """Record ``image`` as the result of the step ``key``."""
        ...

    async def image(self, ref: str) -> Image:
        """An image by reference, as FROM finds it (pulled when it must be)."""
        ...

    def stage_result(self, index: int) -> Image | None:
        """The image a finished stage made (None: it is empty)."""
        ...

    def new_scratch(self) -> Path:
        """A fresh directory of the builder's scratch space; the step removes it."""
        ...

    async def log(self, title: str, index: int, stream: str, data: bytes) -> None:
        """Report output of the step ``title`` (number ``index``)."""
        ...


def config_key(config: Mapping[str, Any]) -> str:
    """An image config as it enters a cache key: canonical JSON."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))
