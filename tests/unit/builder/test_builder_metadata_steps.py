"""Metadata steps store no image of their own (issue 15): the engine against an in-memory node that
stores a step as the runtime does (the parent's config document, the step's history entries, a
content-addressed id), counting what it stores and what it runs."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from dockyard.builder.engine import Builder, Progress, Request
from dockyard.builder.node import Image, Output, PathInfo, RunSpec, StepSpec
from dockyard.core.errors import NotFound

BASE = "sha256:" + "b" * 64


class MemoryNode:
    """The part of ``Runtime`` a RUN/ENV/LABEL build uses, kept in dicts."""

    def __init__(self) -> None:
        base = {"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}, "rootfs": {"diff_ids": ["l0"]}}
        self.docs: dict[str, dict[str, Any]] = {BASE: {**base, "history": [{"created_by": "base"}]}}
        self.tags = {"busybox": BASE}
        self.stored = 0  # images made by steps
        self.runs: list[RunSpec] = []
        self.containers: dict[str, RunSpec] = {}

    def _store(self, step: StepSpec, layer: str | None) -> Image:
        doc = copy.deepcopy(self.docs[step.parent]) if step.parent else {"config": {}, "rootfs": {}}
        if step.config is not None:
            doc["config"] = step.config
        entry: dict[str, Any] = {"created_by": step.created_by}
        if layer is None:
            entry["empty_layer"] = True
        else:
            doc["rootfs"]["diff_ids"] = [*doc["rootfs"].get("diff_ids", []), layer]
        extra = [{"created_by": line, "empty_layer": True} for line in getattr(step, "history", ())]
        doc["history"] = [*doc.get("history", []), *extra, entry]
        image_id = "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        self.docs[image_id] = doc
        self.stored += 1
        return Image(image_id, doc)

    async def inspect(self, ref: str) -> Image:
        image_id = self.tags.get(ref, ref)
        if image_id not in self.docs:
            raise NotFound(f"no such image: {ref}")
        return Image(image_id, self.docs[image_id])

    async def configure(self, step: StepSpec) -> Image:
        return self._store(step, None)

    async def add_layer(self, step: StepSpec, chunks: AsyncIterator[bytes]) -> Image:
        data = b"".join([c async for c in chunks])
        return self._store(step, hashlib.sha256(data).hexdigest())

    async def run(self, spec: RunSpec, output: Output) -> tuple[str, int]:
        self.runs.append(spec)
        container = f"c{len(self.runs)}"
        self.containers[container] = spec
        return container, 0

    async def commit(self, container: str, step: StepSpec) -> Image:
        assert step.parent == self.containers[container].image  # the layer goes on the container's image
        return self._store(step, hashlib.sha256(container.encode()).hexdigest())

    async def remove_container(self, container: str) -> None:
        self.containers.pop(container, None)

    async def stat_paths(self, image: str, paths: list[str]) -> dict[str, PathInfo]:
        return {}

    async def copy_from(self, image: str, path: str, out: Callable[[bytes], object]) -> None:
        raise NotFound(path)

    async def tag(self, image: str, reference: str) -> None:
        self.tags[reference] = image


def _build(node: MemoryNode, state: Path, dockerfile: str) -> tuple[Image, list[Progress]]:
    events: list[Progress] = []

    async def report(p: Progress) -> None:
        events.append(p)

    async def go() -> Image:
        builder = Builder(node, state)  # type: ignore[arg-type]  # the calls a RUN/ENV build makes
        result = await builder.build(Request(dockerfile.encode(), "Dockerfile", state), report)
        return await node.inspect(result.image_id)

    return asyncio.run(go()), events


def _outcomes(events: list[Progress]) -> dict[str, str]:
    """Each Dockerfile step (not FROM) → its status; each started once, before its status."""
    started: set[str] = set()
    out: dict[str, str] = {}
    for e in events:
        if e.status == "started":
            assert e.step not in started, f"{e.step} started twice"
            started.add(e.step)
        elif e.status in ("done", "cached") and "] FROM " not in e.step:
            assert e.step in started and e.step not in out, e.step
            out[e.step] = e.status
    assert started - out.keys() == {e.step for e in events if "] FROM " in e.step}
    return out


N = 1000
MANY_ENV = (
    "FROM busybox\n"
    + "".join(f"ENV V{i}=value-{i}\n" for i in range(N))
    + 'RUN make\nLABEL a=b\nCMD ["app"]\n'
)


def test_thousand_env_lines_store_two_images_with_every_history_entry(tmp_path: Path) -> None:
    node = MemoryNode()
    image, events = _build(node, tmp_path, MANY_ENV)
    # the RUN's commit carries the 1000 ENV steps; the stage's end carries LABEL and CMD
    assert node.stored == 2
    history = [h["created_by"] for h in image.doc["history"]]
    assert (
        history[0] == "base"
        and history[1] == "ENV V0=value-0"
        and history[N] == f"ENV V{N - 1}=value-{N - 1}"
    )
    assert history[N + 1 :] == ["RUN /bin/sh -c make", "LABEL a=b", 'CMD ["app"]']
    assert [h.get("empty_layer", False) for h in image.doc["history"][1 : N + 3]] == [True] * N + [
        False,
        True,
    ]
    config = image.config
    assert len(config["Env"]) == N + 1 and config["Labels"] == {"a": "b"} and config["Cmd"] == ["app"]
    # the RUN saw every ENV, on the stored base (metadata changes no file)
    assert len(node.runs) == 1 and node.runs[0].image == BASE
    assert f"V{N - 1}=value-{N - 1}" in node.runs[0].env
    outcomes = _outcomes(events)
    assert len(outcomes) == N + 3 and set(outcomes.values()) == {"done"}


def test_rebuild_hits_the_cache_and_a_changed_env_invalidates_what_follows(tmp_path: Path) -> None:
    node = MemoryNode()
    first, _ = _build(node, tmp_path, MANY_ENV)
    again, events = _build(node, tmp_path, MANY_ENV)
    assert again.id == first.id and node.stored == 2 and len(node.runs) == 1
    assert set(_outcomes(events).values()) == {"cached"}

    changed, events = _build(node, tmp_path, MANY_ENV.replace("ENV V500=value-500\n", "ENV V500=other\n"))
    assert changed.id != first.id and len(node.runs) == 2  # the RUN after it ran again
    assert "V500=other" in node.runs[1].env
    assert set(_outcomes(events).values()) == {"done"}  # each ENV lives in the RUN's image, made anew
    # a RUN after the metadata, on a cached RUN: the metadata steps are stored with the next one
    tail = MANY_ENV + "ENV LATE=1\nRUN make more\n"
    _build(node, tmp_path, tail)
    last, events = _build(node, tmp_path, tail)
    outcomes = _outcomes(events)
    assert set(outcomes.values()) == {"cached"} and len(outcomes) == N + 5
    assert [h["created_by"] for h in last.doc["history"]][-3:] == [
        'CMD ["app"]',
        "ENV LATE=1",
        "RUN /bin/sh -c make more",
    ]


def test_metadata_only_stage_is_one_configure(tmp_path: Path) -> None:
    node = MemoryNode()
    labels = "".join(f"LABEL l{i}=v{i}\n" for i in range(N))
    image, events = _build(node, tmp_path, "FROM busybox\n" + labels + "USER nobody\n")
    assert node.stored == 1 and len(image.config["Labels"]) == N and image.config["User"] == "nobody"
    assert len(image.doc["history"]) == N + 2
    assert len(_outcomes(events)) == N + 1
