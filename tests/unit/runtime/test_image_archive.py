"""save/load round trips through real tars, and archives written by skopeo."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from image_test_support import ListPublisher, TarBuilder, layer, put_image

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.runtime.images.archive import load, save
from dockyard.runtime.images.store import ImageStore


def fresh(tmp_path: Path, name: str) -> tuple[ImageStore, ListPublisher]:
    publisher = ListPublisher()
    return ImageStore(tmp_path / name, publisher, "/dockyard/runtime/test"), publisher


def chunked(data: bytes, size: int = 777) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["oci", "docker-archive"])
def test_round_trip_keeps_ids_and_names(store: ImageStore, tmp_path: Path, fmt: str) -> None:
    base = layer("base")
    one = store.add_image(put_image(store.content, [base, layer("one")], gzipped=True), "team/one:1")
    two = store.add_image(put_image(store.content, [base, layer("two")]), "localhost:5000/two")
    data = b"".join(save(store, ["team/one:1", "localhost:5000/two:latest"], fmt))
    names = members(data)
    if fmt == "oci":
        assert json.loads(names["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads(names["index.json"])
        assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
            "team/one:1",
            "localhost:5000/two:latest",
        ]
    else:
        manifest = json.loads(names["manifest.json"])
        assert [m["RepoTags"] for m in manifest] == [["team/one:1"], ["localhost:5000/two:latest"]]
        for path in manifest[0]["Layers"]:  # uncompressed, named by diff id
            with tarfile.open(fileobj=io.BytesIO(names[path])) as layer_tar:
                assert layer_tar.getnames()
    other, publisher = fresh(tmp_path, "other")
    loaded = load(other, chunked(data))
    assert {r.id for r in loaded} == {one.id, two.id}
    assert other.resolve("team/one:1").id == one.id and other.resolve("localhost:5000/two").id == two.id
    assert (other.layer_dirs(other.resolve(one.id))[1] / "etc/one").read_bytes() == b"one" * 10
    assert publisher.actions() == ["loaded", "loaded"]
    assert [p.name for p in (other.root / "tmp").iterdir()] == []  # spool removed


def test_save_by_id_is_unnamed_and_bad_input(store: ImageStore, tmp_path: Path) -> None:
    rec = store.add_image(put_image(store.content, [layer("a")]), "a")
    index = json.loads(members(b"".join(save(store, [rec.id[7:19]])))["index.json"])
    assert "annotations" not in index["manifests"][0]
    with pytest.raises(NotFound):
        save(store, ["nope"])
    with pytest.raises(InvalidArgument):
        save(store, ["a"], "zip")
    other, _ = fresh(tmp_path, "other")
    with pytest.raises(InvalidArgument, match="not an image archive"):
        load(other, [TarBuilder().file("hello", b"x").bytes()])
    with pytest.raises(InvalidArgument):
        load(other, [b"garbage" * 300])
    bad = TarBuilder().file("blobs/sha256/" + "0" * 64, b"not that").bytes()
    with pytest.raises(InvalidArgument, match="digest"):
        load(other, [bad])
    assert other.list() == [] and [p.name for p in (other.root / "tmp").iterdir()] == []


def test_legacy_docker_archive_with_symlinked_layer(tmp_path: Path) -> None:
    """The pre-25 docker save layout: <id>/layer.tar, <id>.json, a symlink for a shared layer."""
    source, _ = fresh(tmp_path, "source")
    base = layer("base")
    rec = source.add_image(put_image(source.content, [base, base]), "dup")  # the same diff twice
    config = source.config_bytes(rec)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("aaa/layer.tar", base)
        link = tarfile.TarInfo("bbb/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaa/layer.tar"
        tar.addfile(link)
        add(f"{rec.id[7:]}.json", config)
        entry = [
            {
                "Config": f"{rec.id[7:]}.json",
                "RepoTags": ["dup:latest"],
                "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
            }
        ]
        add("manifest.json", json.dumps(entry).encode())
    other, _ = fresh(tmp_path, "other")
    (loaded,) = load(other, chunked(buf.getvalue()))
    assert loaded.id == rec.id and loaded.repo_tags == ("dup:latest",)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_load_what_skopeo_writes(store: ImageStore, tmp_path: Path, transport: str) -> None:
    rec = store.add_image(put_image(store.content, [layer("a"), layer("b")], gzipped=True), "team/app:v1")
    layout = tmp_path / "layout"
    with tarfile.open(fileobj=io.BytesIO(b"".join(save(store, ["team/app:v1"])))) as tar:
        tar.extractall(layout)  # our own tar
    out = tmp_path / "out.tar"
    dest = f"{transport}:{out}:team/app:v1"
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "-q", f"oci:{layout}:team/app:v1", dest],
        check=True,
        capture_output=True,
        timeout=120,
    )
    other, _ = fresh(tmp_path, "other")
    (loaded,) = load(other, chunked(out.read_bytes(), 1 << 16))
    assert loaded.diff_ids == rec.diff_ids
    if transport == "docker-archive":
        # skopeo names it docker.io/team/app:v1; the store keeps docker's familiar form, as docker lists it
        assert loaded.repo_tags == ("team/app:v1",)
    else:  # the same manifest and config, so the same id
        assert loaded.id == rec.id and loaded.repo_tags == ("team/app:v1",)
    assert (other.layer_dirs(loaded)[1] / "etc/b").read_bytes() == b"b" * 10
    # and what we save as docker-archive, skopeo reads
    ours = tmp_path / "ours.tar"
    ours.write_bytes(b"".join(save(store, ["team/app:v1"], "docker-archive")))
    result = subprocess.run(
        ["skopeo", "inspect", "--config", f"docker-archive:{ours}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert json.loads(result.stdout)["rootfs"]["diff_ids"] == list(rec.diff_ids)
