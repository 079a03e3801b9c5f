"""What the build engine needs from a runtime node: the ``Runtime`` role and the values it trades.

The engine holds no images: the state of a stage after each step is an image in the node's store.
``remote.py`` implements ``Runtime`` over gRPC; the step modules (``steps/``) speak only this.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dockyard.builder.mounts import RunMount


@dataclass(frozen=True, slots=True)
class Image:
    """An image of the node's store: its id and its config document."""

    id: str
    doc: Mapping[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        section = self.doc.get("config")
        return dict(section) if isinstance(section, dict) else {}


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step for the node to store: on ``parent`` ("" = scratch), the new config (None: keep)."""

    parent: str
    config: dict[str, Any] | None
    created_by: str
    created: int  # seconds since the epoch
    clamp_mtime: int | None = None
    # the history lines of the metadata steps since ``parent`` (``head.Head.pending``): entries
    # without a layer, stored before this step's
    history: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunSpec:
    image: str
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    network: str
    mounts: tuple[RunMount, ...] = ()  # RUN --mount (dockyard.builder.mounts)


@dataclass(frozen=True, slots=True)
class PathInfo:
    """A path of an image: where it leads (symlinks followed), its st_mode and owner."""

    resolved: str
    mode: int
    uid: int
    gid: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


Output = Callable[[str, bytes], Awaitable[None]]


class Runtime(Protocol):
    async def inspect(self, ref: str) -> Image: ...

    async def add_layer(self, step: StepSpec, chunks: AsyncIterator[bytes]) -> Image: ...

    async def configure(self, step: StepSpec) -> Image: ...

    async def run(self, spec: RunSpec, output: Output) -> tuple[str, int]: ...

    async def commit(self, container: str, step: StepSpec) -> Image: ...

    async def remove_container(self, container: str) -> None: ...

    async def copy_from(self, image: str, path: str, out: Callable[[bytes], object]) -> None: ...

    async def tag(self, image: str, reference: str) -> None: ...

    async def stat_paths(self, image: str, paths: list[str]) -> dict[str, PathInfo]: ...

    async def squash(self, image: str, base: str, created_by: str, created: int) -> Image: ...

    async def pull(self, reference: str) -> str: ...

    # volumes, for RUN --mount=type=cache (dockyard.builder.mounts)
    async def create_volume(self, name: str, labels: Mapping[str, str], opts: Mapping[str, str]) -> None: ...

    async def list_volumes(self, filters: Sequence[str]) -> list[str]: ...

    async def remove_volume(self, name: str) -> None: ...
