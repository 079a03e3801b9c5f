"""Every snapshotter against the same contract, with real mounts (kernel overlay, fuse-overlayfs).

As real root (CI) kernel overlay mounts without a user namespace; the rootless proof is
tests/integration/runtime/test_snapshotters.py. Prints prepare+unmount times (pytest -s).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from snapshot_test_support import EXPECTED_CHANGES, UNION, change_the_rootfs, make_layers, tree

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.rootless import SnapshotterChoice
from dockyard.runtime.snapshot import (
    CopySnapshotter,
    FuseOverlaySnapshotter,
    OverlaySnapshotter,
    Snapshotter,
    mount_overlay,
    snapshotter_for,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts and whiteout devices need root")

KINDS: dict[str, Callable[[Path], Snapshotter]] = {
    "overlay": OverlaySnapshotter,
    "fuse-overlayfs": FuseOverlaySnapshotter,
    "copy": CopySnapshotter,
}


@pytest.fixture(params=list(KINDS))
def snaps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshotter]:
    s = KINDS[request.param](tmp_path / "snapshots")
    yield s
    for key in ("c1", "c2", "scratch"):
        s.remove(key)


def test_prepare_shows_the_union_of_the_layers(snaps: Snapshotter, tmp_path: Path) -> None:
    lowers = make_layers(tmp_path)
    m = snaps.prepare("c1", lowers)
    assert tree(m) == UNION
    assert (m / "o" / "y").read_text() == "y"  # opaque: o/x of l1 is hidden
    assert (m / "keep" / "k").stat().st_uid == 33
    assert snaps.is_mounted("c1")
    assert snaps.prepare("c1", lowers) == m  # idempotent


def test_changes_and_layer_are_the_same_for_every_snapshotter(snaps: Snapshotter, tmp_path: Path) -> None:
    lowers = make_layers(tmp_path)
    change_the_rootfs(snaps.prepare("c1", lowers))
    assert [str(c) for c in snaps.changes("c1", lowers)] == EXPECTED_CHANGES
    out = io.BytesIO()
    digest, size = snaps.write_layer("c1", lowers, out)
    assert size == len(out.getvalue()) and digest.startswith("sha256:")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = {t.name: t for t in tf}
    assert "d/.wh.a" in members and members["d/.wh.a"].isreg() and members["d/.wh.a"].size == 0
    assert ("o/.wh..wh..opq" in members) or ("o/.wh.y" in members)  # copy: the hidden entry itself
    assert members["new"].uid == 33 and members["new"].uname == ""
    assert members["new2"].islnk() and members["new2"].linkname == "new"
    assert members["lnk"].issym() and members["lnk"].linkname == "/etc/passwd"
    # fuse-overlayfs's own marks are not part of the layer: no .wh..opq, no marker in new dirs
    assert not [n for n in members if n.endswith("/.wh..opq") or (n.startswith("nd/") and ".wh." in n)]


def test_unmount_and_mount_again_keep_the_changes(snaps: Snapshotter, tmp_path: Path) -> None:
    lowers = make_layers(tmp_path)
    m = snaps.prepare("c1", lowers)
    (m / "kept").write_text("1")
    snaps.unmount("c1")
    snaps.unmount("c1")  # idempotent
    if snaps.kind is not SnapshotterChoice.COPY:
        assert not snaps.is_mounted("c1") and not (m / "kept").exists()
    assert snaps.mount("c1", lowers) == m
    assert (m / "kept").read_text() == "1"
    assert snaps.mount("c1", lowers) == m  # mounted already: nothing happens


def test_scratch_image_without_layers(snaps: Snapshotter) -> None:
    m = snaps.prepare("scratch", [])
    assert tree(m) == []
    (m / "hello").write_text("hi")
    assert [str(c) for c in snaps.changes("scratch", [])] == ["A /hello"]


def test_remove_deletes_everything_whatever_state_it_is_in(snaps: Snapshotter, tmp_path: Path) -> None:
    lowers = make_layers(tmp_path)
    snaps.prepare("c1", lowers)
    snaps.remove("c1")
    assert not (tmp_path / "snapshots" / "c1").exists()
    snaps.remove("c1")  # gone already
    (tmp_path / "snapshots" / "c2" / "upper").mkdir(parents=True)  # a prepare cut short
    snaps.remove("c2")
    assert not (tmp_path / "snapshots" / "c2").exists()
    assert tree(lowers[0]) == ["d", "d/a", "d/b", "gone", "hl1", "hl2", "keep", "keep/k", "o", "o/x"]


def test_mount_of_an_unknown_snapshot_and_bad_keys(snaps: Snapshotter) -> None:
    with pytest.raises(NotFound):
        snaps.mount("c1", [])
    for bad in ("", "..", "a/b", "../x", ".hidden"):
        with pytest.raises(InvalidArgument):
            snaps.prepare(bad, [])


def test_snapshotter_for_follows_the_ladder(tmp_path: Path) -> None:
    assert isinstance(snapshotter_for(SnapshotterChoice.OVERLAY, tmp_path), OverlaySnapshotter)
    assert isinstance(snapshotter_for(SnapshotterChoice.FUSE_OVERLAYFS, tmp_path), FuseOverlaySnapshotter)
    assert isinstance(snapshotter_for(SnapshotterChoice.COPY, tmp_path), CopySnapshotter)


@pytest.mark.parametrize(("method", "count"), [("auto", 120), ("fsconfig", 120), ("relative", 50)])
def test_many_layers_beyond_the_mount_option_page(tmp_path: Path, method: str, count: int) -> None:
    """Layers at store-like paths: 7-16 KB of lowerdir, more than the page mount(2) takes.

    The relative fallback (kernels before 6.8) shortens each to ``<64 hex>/fs``: about 55 fit.
    """
    store = tmp_path / "store" / "layers"
    lowers = []
    for i in range(count):
        fs = store / f"{i:064x}" / "fs"
        fs.mkdir(parents=True)
        (fs / f"f{i}").write_text(str(i))
        (fs / "top").write_text(str(i))
        lowers.append(fs)
    assert len(":".join(map(str, lowers))) > 4096
    s = OverlaySnapshotter(tmp_path / "snapshots", method=method)
    m = s.prepare("c1", lowers)
    try:
        last = str(count - 1)
        assert (m / "f0").read_text() == "0" and (m / f"f{last}").read_text() == last
        assert (m / "top").read_text() == last  # bottom first: the last layer wins
    finally:
        s.remove("c1")


def test_mount2_alone_refuses_what_does_not_fit_a_page(tmp_path: Path) -> None:
    lowers = []
    for i in range(120):
        (tmp_path / f"{i:064x}").mkdir()
        lowers.append(tmp_path / f"{i:064x}")
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    with pytest.raises(OSError):
        mount_overlay(lowers, tmp_path / "upper", tmp_path / "work", tmp_path / "merged", method="mount2")


@pytest.mark.parametrize("kind", list(KINDS))
def test_time_prepare_and_unmount_of_three_layers(tmp_path: Path, kind: str) -> None:
    lowers = []
    for i in range(3):
        fs = tmp_path / "layers" / f"{i}" / "fs"
        (fs / "usr" / "bin").mkdir(parents=True)
        for j in range(200):
            (fs / "usr" / "bin" / f"tool{i}-{j}").write_bytes(b"x" * 4096)
        lowers.append(fs)
    s = KINDS[kind](tmp_path / "snapshots")
    runs = []
    for n in range(10):
        t = time.perf_counter()
        s.prepare(f"c{n}", lowers)
        s.unmount(f"c{n}")
        runs.append(time.perf_counter() - t)
        s.remove(f"c{n}")
    runs.sort()
    print(f"\n{kind}: prepare+unmount of 3 layers (600 files): median {runs[5] * 1000:.1f} ms")
    assert runs[5] < 2.0
