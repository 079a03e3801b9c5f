"""Sizes a client may ask for (dockyard.core.bounds), refused at create with one line and nothing
made: before, a 10 MB name, a 15 MB environment, 200k labels or 100k arguments were recorded, and
then every `ps -a` and every runtime event behind the name's failed."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest
from image_test_support import ListPublisher

from dockyard.core import bounds
from dockyard.core.cgroups import probe
from dockyard.core.errors import InvalidArgument
from dockyard.core.rootless import SnapshotterChoice
from dockyard.runtime.cgroups import Cgroups
from dockyard.runtime.containers import ContainerManager
from dockyard.runtime.images.store import ImageStore
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.network import Slirp
from dockyard.runtime.records import ContainerConfig
from dockyard.runtime.snapshot import snapshotter_for


@pytest.fixture
def manager(tmp_path: Path, store: ImageStore, publisher: ListPublisher) -> ContainerManager:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bin")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    store.import_rootfs([buf.getvalue()], "busybox:latest", ['CMD ["sh"]'], "")
    return ContainerManager(
        tmp_path / "containers",
        store,
        snapshotter_for(SnapshotterChoice.COPY, tmp_path / "snapshots"),
        Monitor(tmp_path / "runc"),
        Slirp(),
        publisher,
        "test",
        cgroups=Cgroups(probe(tmp_path / "no-cgroups")),
    )


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (ContainerConfig(image="busybox:latest", name="n" * (10 << 20)), "longer than 255 bytes"),
        (ContainerConfig(image="busybox:latest", name="n" * 256), "longer than 255 bytes"),
        (ContainerConfig(image="busybox:latest", name="a"), "invalid container name"),
        (ContainerConfig(image="busybox:latest", name="-x"), "invalid container name"),
        (ContainerConfig(image="busybox:latest", name="a/b"), "invalid container name"),
        (ContainerConfig(image="busybox:latest", env=["A=" + "x" * (15 << 20)]), "longer than 128 KiB"),
        (
            ContainerConfig(image="busybox:latest", env=[f"A{i}={'x' * 1000}" for i in range(2000)]),
            "over 1 MiB together",
        ),
        (ContainerConfig(image="busybox:latest", command=["argument"] * 100_000), "over 1 MiB together"),
        (ContainerConfig(image="busybox:latest", entrypoint=["e" * (200 << 10)]), "entrypoint"),
        (
            ContainerConfig(image="busybox:latest", labels={f"l{i}": "v" for i in range(200_000)}),
            "labels are over 256 KiB",
        ),
        (ContainerConfig(image="busybox:latest", labels={"k" * 2000: "v"}), "longer than 1024 bytes"),
    ],
)
def test_oversized_specs_are_refused_and_nothing_is_made(
    manager: ContainerManager, publisher: ListPublisher, config: ContainerConfig, says: str
) -> None:
    with pytest.raises(InvalidArgument, match=says) as refused:
        asyncio.run(manager.create(config))
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200
    assert manager.list_containers(all=True) == []
    assert [e for e in publisher.events if "container" in e.type] == []


def test_specs_within_the_bounds_are_made(manager: ContainerManager) -> None:
    config = ContainerConfig(
        image="busybox:latest",
        name="n" * 255,
        command=["x" * (100 << 10)],
        env=[f"A{i}={'x' * 1000}" for i in range(500)],
        labels={f"l{i}": "v" * 100 for i in range(1000)},
    )
    record = asyncio.run(manager.create(config))
    assert record.name == "n" * 255
    assert asyncio.run(manager.create(ContainerConfig(image="busybox:latest", name="ab"))).name == "ab"


def test_rename_checks_the_name_bounds(manager: ContainerManager) -> None:
    record = asyncio.run(manager.create(ContainerConfig(image="busybox:latest", name="first")))
    with pytest.raises(InvalidArgument, match="longer than 255 bytes"):
        asyncio.run(manager.rename(record.id, "n" * 300))
    assert manager.get(record.id).name == "first"


def test_a_whole_spec_message_is_bounded() -> None:
    from dockyard.api.containers.v1 import containers_pb2 as cpb

    big = cpb.ContainerSpec(image="busybox", tmpfs=["/t" + "x" * 1000] * 3000)
    with pytest.raises(InvalidArgument, match=r"the container spec is .* at most 2 MiB"):
        bounds.check_message_size(big.ByteSize(), "the container spec")
    bounds.check_message_size(cpb.ContainerSpec(image="busybox").ByteSize(), "the container spec")
