"""What a runtime killed mid-work left behind is swept when the next one starts (the real
ContainerManager over real directories; no container runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from image_test_support import ListPublisher

from dockyard.core.rootless import SnapshotterChoice
from dockyard.runtime.containers import ContainerManager, removal_owed
from dockyard.runtime.images.store import ImageStore
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.network import Slirp
from dockyard.runtime.records import ContainerConfig, ContainerRecord, State
from dockyard.runtime.snapshot import snapshotter_for


def _manager(tmp_path: Path, store: ImageStore, publisher: ListPublisher) -> ContainerManager:
    return ContainerManager(
        tmp_path / "containers",
        store,
        snapshotter_for(SnapshotterChoice.COPY, tmp_path / "snapshots"),
        Monitor(tmp_path / "runc"),
        Slirp(),
        publisher,
        "/dockyard/runtime/test",
    )


def test_a_commit_killed_mid_layer_leaves_no_tar(
    tmp_path: Path, store: ImageStore, publisher: ListPublisher
) -> None:
    root = tmp_path / "containers"
    root.mkdir()
    leftover = root / "commit-k1ll3d.tar"
    leftover.write_bytes(b"\0" * 65536)  # what `kill -9` mid-commit left (210 MB in the report)
    manager = _manager(tmp_path, store, publisher)
    asyncio.run(manager.recover())
    assert not leftover.exists()
    assert manager.list_containers(all=True) == []


def _left(root: Path, name: str, state: State, *, rm: bool) -> ContainerRecord:
    """A container record as a killed service left it on disk."""
    cid = (name.encode().hex() * 64)[:64]
    record = ContainerRecord(
        id=cid,
        name=name,
        config=ContainerConfig(image="busybox", name=name, auto_remove=rm),
        image_id="sha256:" + "0" * 64,
        created="2026-12-07T00:00:00Z",
        state=state,
        exit_code=0 if state is State.CREATED else 1,
    )
    (root / cid).mkdir(parents=True)
    (root / cid / "container.json").write_text(record.to_json())
    return record


@pytest.mark.parametrize(
    ("state", "rm", "owed"),
    [
        (State.CREATED, True, True),  # `run --rm` whose start the killed service never made
        (State.EXITED, True, True),  # exited, its removal unmade
        (State.DEAD, True, True),
        (State.RUNNING, True, False),  # adopted: removed when it exits
        (State.PAUSED, True, False),
        (State.CREATED, False, False),  # `create` without --rm: the user's to start
        (State.EXITED, False, False),
    ],
)
def test_which_containers_a_killed_service_owed_a_removal(state: State, rm: bool, owed: bool) -> None:
    record = ContainerRecord(
        "c" * 64, "n", ContainerConfig(image="i", auto_remove=rm), "sha256:x", "t", state
    )
    assert removal_owed(record) is owed


def test_rm_containers_left_created_or_exited_are_removed_at_start_with_their_events(
    tmp_path: Path, store: ImageStore, publisher: ListPublisher
) -> None:
    """Issue 15, item 8: a `run --rm` that failed while the runtime was down left a Created container."""
    root = tmp_path / "containers"
    created = _left(root, "rm-created", State.CREATED, rm=True)
    exited = _left(root, "rm-exited", State.EXITED, rm=True)
    kept = [
        _left(root, "plain-created", State.CREATED, rm=False),
        _left(root, "plain-exited", State.EXITED, rm=False),
    ]
    manager = _manager(tmp_path, store, publisher)
    asyncio.run(manager.recover())
    assert sorted(r.name for r in manager.list_containers(all=True)) == sorted(r.name for r in kept)
    assert not (root / created.id).exists() and not (root / exited.id).exists()
    removed = [e for e in publisher.events if e.action == "removed"]
    assert sorted(e.subject for e in removed) == sorted([created.id, exited.id])


def test_a_store_killed_mid_build_step_leaves_no_spool(tmp_path: Path, publisher: ListPublisher) -> None:
    """A RUN step's layer (CommitStep spools ``step-*.tar``, ``run-*.tar``, ``squash-*/`` in the
    store's tmp) and a layer being unpacked, as kill -9 of the runtime leaves them."""
    root = tmp_path / "images"
    ImageStore(root, publisher, "/dockyard/runtime/test")
    (root / "tmp" / "step-k1ll3d.tar").write_bytes(b"\0" * 4096)
    (root / "tmp" / "squash-k1ll3d" / "etc").mkdir(parents=True)
    (root / "layers" / ".tmp-abc-1234").mkdir()
    ImageStore(root, publisher, "/dockyard/runtime/test")
    assert list((root / "tmp").iterdir()) == []
    assert list((root / "layers").iterdir()) == []
