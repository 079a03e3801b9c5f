"""ImageStore over real files: add, share layers by chain id, tag/untag/remove/prune, import, commit."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import pytest
from image_test_support import ListPublisher, TarBuilder, image_config, layer, put_image, sha

from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.runtime.images.store import ImageStore, chain_ids, goarch


def no_users(_id: str) -> list[str]:
    return []


def test_add_image_unpacks_and_records(store: ImageStore, publisher: ListPublisher) -> None:
    manifest = put_image(store.content, [layer("a"), layer("b")], gzipped=True)
    record = store.add_image(manifest, "team/app:v1", repo_digest=f"localhost:5000/team/app@{sha(manifest)}")
    assert record.repo_tags == ("team/app:v1",)
    assert record.repo_digests == (f"localhost:5000/team/app@{sha(manifest)}",)
    assert record.manifest_digest == sha(manifest)
    assert record.size == 20
    dirs = store.layer_dirs(record)
    assert [d.parent.name for d in dirs] == [c[7:] for c in chain_ids(list(record.diff_ids))]
    assert (dirs[0] / "etc/a").read_bytes() == b"a" * 10 and (dirs[1] / "etc/b").exists()
    assert not (dirs[1] / "etc/a").exists()  # each dir holds only its own layer's changes
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700
    assert publisher.events == []  # the caller emits PULLED
    # survives a restart: records and tags are on disk
    again = ImageStore(store.root, publisher, "x")
    assert again.resolve("team/app:v1") == record
    assert again.list() == [record]


def test_layers_shared_by_chain_id(store: ImageStore) -> None:
    base = layer("base")
    one = store.add_image(put_image(store.content, [base, layer("one")]), "one")
    two = store.add_image(put_image(store.content, [base, layer("two")]), "two")
    assert store.layer_dirs(one)[0] == store.layer_dirs(two)[0]
    assert len([p for p in (store.root / "layers").iterdir()]) == 3
    usage = {row.image.id: row for row in store.disk_usage(no_users)}
    assert usage[one.id].shared_size == 40 and usage[one.id].unique_size == 30
    # same diff on another parent is another chain: stored apart
    three = store.add_image(put_image(store.content, [layer("one")]), "three")
    assert store.layer_dirs(three)[0] != store.layer_dirs(one)[1]


def test_diff_id_mismatch_refused_and_nothing_recorded(store: ImageStore) -> None:
    manifest = put_image(
        store.content, [layer("a")], config_extra={"rootfs": {"type": "layers", "diff_ids": [sha(b"x")]}}
    )
    with pytest.raises(InvalidArgument, match="diff id"):
        store.add_image(manifest, "bad")
    assert store.list() == []
    assert [p.name for p in (store.root / "layers").iterdir()] == []


def test_missing_blob_and_index_refused(store: ImageStore) -> None:
    manifest = json.loads(put_image(store.content, [layer("a")]))
    manifest["layers"][0]["digest"] = sha(b"absent")
    with pytest.raises(NotFound):
        store.add_image(json.dumps(manifest).encode(), None)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    with pytest.raises(InvalidArgument, match="index"):
        store.add_image(json.dumps(index).encode(), None)


def test_resolve_forms(store: ImageStore) -> None:
    manifest = put_image(store.content, [layer("a")])
    rec = store.add_image(manifest, "busybox", repo_digest=f"busybox@{sha(manifest)}")
    for ref in ["busybox", "busybox:latest", rec.id, rec.id[7:13], rec.id[:11], f"busybox@{sha(manifest)}"]:
        assert store.resolve(ref).id == rec.id, ref
    with pytest.raises(NotFound, match="no such image: nope"):
        store.resolve("nope")
    with pytest.raises(NotFound):
        store.resolve("busybox:other")
    with pytest.raises(InvalidArgument):
        store.resolve("Bad Name")
    # two images whose ids share their first 4 hex digits (a birthday search over config seeds)
    seen: dict[str, int] = {}
    for seed in range(100_000):
        prefix = sha(image_config([layer("b")], {"seed": seed}))[7:11]
        if prefix in seen:
            break
        seen[prefix] = seed
    for s in (seen[prefix], seed):
        store.add_image(put_image(store.content, [layer("b")], config_extra={"seed": s}), None)
    with pytest.raises(InvalidArgument, match="ambiguous"):
        store.resolve(prefix)


def test_tag_moves_and_leaves_old_dangling(store: ImageStore, publisher: ListPublisher) -> None:
    a = store.add_image(put_image(store.content, [layer("a")]), "app:1")
    b = store.add_image(put_image(store.content, [layer("b")]), "other")
    store.tag("other", "app:1")
    assert store.resolve("app:1").id == b.id
    assert store.resolve(a.id).repo_tags == ()
    assert publisher.actions() == ["tagged"]
    with pytest.raises(InvalidArgument):
        store.tag("other", f"x@{a.id}")


def test_remove_by_name_untags_then_deletes(store: ImageStore, publisher: ListPublisher) -> None:
    rec = store.add_image(put_image(store.content, [layer("a")]), "app:1")
    store.tag("app:1", "app:2")
    assert store.remove("app:1", False, no_users) == (["app:1"], [])
    assert store.resolve(rec.id).repo_tags == ("app:2",)
    untagged, deleted = store.remove("app:2", False, no_users)
    assert (untagged, deleted) == (["app:2"], [rec.id])
    assert store.list() == []
    assert [p for p in (store.root / "layers").iterdir()] == []
    assert not store.content.has(rec.id) and not store.content.has(rec.layer_digests[0])
    assert publisher.actions() == ["tagged", "untagged", "untagged", "removed"]


def test_remove_keeps_what_others_use(store: ImageStore) -> None:
    base = layer("base")
    one = store.add_image(put_image(store.content, [base, layer("one")]), "one")
    two = store.add_image(put_image(store.content, [base, layer("two")]), "two")
    store.remove("one", False, no_users)
    assert store.layer_dirs(two)[0].is_dir() and store.content.has(two.layer_digests[0])
    assert not store.content.has(one.layer_digests[1])
    assert len(list((store.root / "layers").iterdir())) == 2


def test_remove_by_id_with_several_tags_needs_force(store: ImageStore) -> None:
    rec = store.add_image(put_image(store.content, [layer("a")]), "a:1")
    store.tag("a:1", "a:2")
    with pytest.raises(FailedPrecondition, match="several"):
        store.remove(rec.id, False, no_users)
    assert store.remove(rec.id[7:19], True, no_users) == (["a:1", "a:2"], [rec.id])


def test_remove_in_use(store: ImageStore) -> None:
    rec = store.add_image(put_image(store.content, [layer("a")]), "a")
    users = {rec.id: ["web"]}.get
    with pytest.raises(FailedPrecondition, match=r"in use by container.*web"):
        store.remove("a", False, lambda i: users(i) or [])
    untagged, deleted = store.remove("a", True, lambda i: users(i) or [])
    assert (untagged, deleted) == (["a:latest"], [])
    assert store.resolve(rec.id).repo_tags == () and store.layer_dirs(rec)[0].is_dir()


def _bytes_under(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_prune(store: ImageStore, tmp_path: Path) -> None:
    """The bytes reported reclaimed are the bytes gone from disk: the blobs (compressed layers,
    config, manifest) and the unpacked layers (it said 4.24 kB after 1.6 GB went)."""
    dangling = store.add_image(put_image(store.content, [layer("d", ("big", b"x" * 300_000))]), None)
    tagged = store.add_image(put_image(store.content, [layer("t")]), "t")
    used = store.add_image(put_image(store.content, [layer("u")]), None)
    users = lambda i: ["c1"] if i == used.id else []  # noqa: E731
    before = _bytes_under(tmp_path / "images")
    deleted, reclaimed = store.prune(False, users)
    after = _bytes_under(tmp_path / "images")
    assert deleted == [dangling.id] and reclaimed > 600_000  # the 300 kB file, as blob and unpacked
    assert before - after - 4096 <= reclaimed <= before - after  # (the refs file shrank too)
    deleted, reclaimed = store.prune(True, users)
    assert deleted == [tagged.id] and 0 < reclaimed <= after - _bytes_under(tmp_path / "images")
    assert [r.id for r in store.list()] == [used.id]


def test_import_rootfs_gzip_with_changes(store: ImageStore, publisher: ListPublisher) -> None:
    tar = TarBuilder().dir("bin").file("bin/sh", b"#!", mode=0o755).bytes()
    blob = gzip.compress(tar)
    rec = store.import_rootfs(
        [blob[:10], blob[10:]], "local/base:1", ['CMD ["/bin/sh"]', "ENV A=1"], "from a tarball"
    )
    assert rec.diff_ids == (sha(tar),) and rec.layer_digests == (sha(blob),)
    manifest = json.loads(store.manifest_bytes(rec))
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    config = store.config(rec)
    assert config["architecture"] == goarch() and config["os"] == "linux"
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert config["config"]["Env"][0].startswith("PATH=") and "A=1" in config["config"]["Env"]
    assert config["history"][0]["comment"] == "from a tarball"
    assert (store.layer_dirs(rec)[0] / "bin/sh").read_bytes() == b"#!"
    assert publisher.actions() == ["imported"]
    plain = store.import_rootfs([tar], None, ["ENV PATH=/x"], "")
    assert store.config(plain)["config"]["Env"] == ["PATH=/x"]
    assert plain.layer_digests == (sha(tar),)


def test_import_garbage_refused(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument):
        store.import_rootfs([b"this is no tar" * 100], "x", [], "")
    with pytest.raises(InvalidArgument, match="unsupported --change"):
        store.import_rootfs([TarBuilder().bytes()], "x", ["RUN true"], "")
    assert store.list() == []


def test_commit_layer_and_history(store: ImageStore, publisher: ListPublisher, tmp_path: Path) -> None:
    parent = store.add_image(put_image(store.content, [layer("a")], gzipped=True), "base")
    diff = tmp_path / "diff.tar"
    diff.write_bytes(TarBuilder().file("etc/new", b"12345").file("etc/.wh.a").bytes())
    child = store.commit_layer(
        parent, diff, ["LABEL v=2"], "msg", "me", "/bin/sh -c touch new", {"Cmd": ["sh"]}, "app:2"
    )
    assert child.diff_ids == (*parent.diff_ids, sha(diff.read_bytes()))
    assert child.layer_digests[0] == parent.layer_digests[0]
    config = store.config(child)
    assert config["config"]["Cmd"] == ["sh"] and config["config"]["Labels"] == {"v": "2"}
    assert config["author"] == "me"
    dirs = store.layer_dirs(child)
    assert dirs[0] == store.layer_dirs(parent)[0]
    assert stat.S_ISCHR(os.lstat(dirs[1] / "etc/a").st_mode)
    history = store.history("app:2")
    assert [h.created_by for h in history] == ["/bin/sh -c touch new", "layer 0"]
    assert history[0].id == child.id and history[1].id == "<missing>"
    assert history[0].size == 5 and history[0].comment == "msg" and history[1].size == 10
    assert publisher.actions() == ["committed"]
    scratch = store.commit_layer(None, diff, [], "", "", "scratch", None, None)
    assert scratch.diff_ids == (sha(diff.read_bytes()),) and scratch.repo_tags == ()


def test_a_restart_removes_blobs_no_image_holds(store: ImageStore, publisher: ListPublisher) -> None:
    """A pull killed after its blobs were stored, before its record: nothing counted or pruned them."""
    kept = store.add_image(put_image(store.content, [layer("kept")]), "kept")
    orphan_layer = layer("orphan")
    put_image(store.content, [orphan_layer])  # a pull that died here: config and layer stored
    assert sha(orphan_layer) in set(store.content.digests())
    again = ImageStore(store.root, publisher, "x")
    after = set(again.content.digests())
    assert sha(orphan_layer) not in after
    assert after == {kept.id, kept.manifest_digest, *kept.layer_digests}
    assert again.resolve("kept") == kept and again.layer_dirs(kept)[0].exists()


def test_a_config_with_a_lone_surrogate_escape_is_refused_and_nothing_recorded(store: ImageStore) -> None:
    # JSON's "\ud800" parses to a lone surrogate no UTF-8 encoder takes: recorded, it broke
    # `images` and `system df` for the whole node.
    manifest = put_image(store.content, [layer("a")], config_extra={"config": {"Env": ["X=\ud800"]}})
    assert b"\\ud800" in store.content.read_bytes(json.loads(manifest)["config"]["digest"])
    with pytest.raises(InvalidArgument, match=r"not valid Unicode.*\\ud800"):
        store.add_image(manifest, "bad")
    assert store.list() == []


def test_an_image_recorded_with_a_lone_surrogate_still_lists() -> None:
    # one recorded before pull refused them must not break `images` / `system df` for the node
    from types import SimpleNamespace

    from dockyard.runtime.servicer import image_to_pb

    record = SimpleNamespace(
        id="sha256:" + "a" * 64,
        repo_tags=["bad:latest"],
        repo_digests=[],
        manifest_media_type="application/vnd.oci.image.manifest.v1+json",
        manifest_digest="sha256:" + "b" * 64,
        size=1,
        diff_ids=[],
    )
    config = {"os": "linux", "config": {"Labels": {"k": "x\ud800y"}, "Env": ["A=\udfff"]}}
    store = SimpleNamespace(config=lambda _record: config)
    msg = image_to_pb(store, record)  # type: ignore[arg-type]
    assert msg.labels["k"] == "x\ufffdy" and msg.repo_tags == ["bad:latest"]
    assert json.loads(msg.config)["config"]["Env"] == ["A=\ufffd"]


def test_docker_hub_names_are_kept_familiar_and_older_spellings_found(
    store: ImageStore, publisher: ListPublisher
) -> None:
    manifest = put_image(store.content, [layer("hub")])
    record = store.add_image(manifest, "docker.io/library/busybox:1", repo_digest=f"busybox@{sha(manifest)}")
    assert record.repo_tags == ("busybox:1",)  # as docker lists it
    for name in (
        "busybox:1",
        "library/busybox:1",
        "docker.io/busybox:1",
        "index.docker.io/library/busybox:1",
    ):
        assert store.resolve(name).id == record.id
    # a refs.json written before names were familiar: found again by the name docker uses
    doc = json.loads((store.root / "refs.json").read_bytes())
    doc["tags"] = {"docker.io/team/app:2": record.id}
    (store.root / "refs.json").write_text(json.dumps(doc))
    again = ImageStore(store.root, publisher, "x")
    assert (
        again.resolve("team/app:2").id == record.id and again.resolve("docker.io/team/app:2").id == record.id
    )
