"""What a runtime killed mid-work left behind is swept when the next one starts (the real
ContainerManager over real directories; no container runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from image_test_support import ListPublisher

from dockyard.core.rootless import SnapshotterChoice
from dockyard.runtime.containers import ContainerManager
from dockyard.runtime.images.store import ImageStore
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.network import Slirp
from dockyard.runtime.snapshot import snapshotter_for


def test_a_commit_killed_mid_layer_leaves_no_tar(
    tmp_path: Path, store: ImageStore, publisher: ListPublisher
) -> None:
    root = tmp_path / "containers"
    root.mkdir()
    leftover = root / "commit-k1ll3d.tar"
    leftover.write_bytes(b"\0" * 65536)  # what `kill -9` mid-commit left (210 MB in the report)
    manager = ContainerManager(
        root,
        store,
        snapshotter_for(SnapshotterChoice.COPY, tmp_path / "snapshots"),
        Monitor(tmp_path / "runc"),
        Slirp(),
        publisher,
        "/dockyard/runtime/test",
    )
    asyncio.run(manager.recover())
    assert not leftover.exists()
    assert manager.list_containers(all=True) == []
