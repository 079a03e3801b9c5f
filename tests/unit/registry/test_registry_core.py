"""The registry core in-process: uploads, blobs, manifests, tags, referrers, events."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from registry_unit_support import ListPublisher, image_manifest, push_blob, push_image

from dockyard.core.oci.digest import Digest, DigestInvalid
from dockyard.core.oci.manifest import ManifestInvalid
from dockyard.core.outbox import Outbox, OutboxPublisher
from dockyard.registry.config import RegistryConfig
from dockyard.registry.errors import (
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    ManifestBlobUnknown,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    RangeInvalid,
    SizeInvalid,
    TagInvalid,
)
from dockyard.registry.registry import Registry, validate_name
from dockyard.registry.storage import FilesystemDriver


def sha(data: bytes, alg: str = "sha256") -> Digest:
    return Digest(alg, hashlib.new(alg, data).hexdigest())


@pytest.mark.parametrize("name", ["a", "library/busybox", "a.b_c__d--e/f0", "x/y/z"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "../etc", "a/../b", "a//b", "/a", "a/", "_a", "a_", "a___b", "a/.b", "a" * 256, "a\x00"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        validate_name(name)


def test_chunked_upload_hashes_incrementally_and_commits(registry: Registry) -> None:
    status = registry.start_upload("r")
    data = b"0123456789" * 1000
    for i in range(0, len(data), 3000):
        w = registry.open_chunk("r", status.upload_id, start=i, length=len(data[i : i + 3000]))
        w.write(data[i : i + 3000])
        assert w.commit().offset == min(i + 3000, len(data))
    info = registry.finish_upload("r", status.upload_id, sha(data))
    assert info.size == len(data)
    assert registry.stat_blob("r", sha(data)).size == len(data)
    assert registry.storage.read_bytes(info.path, 1 << 20) == data
    assert registry.active_uploads() == 0


def test_out_of_order_chunk_is_range_invalid_with_offset(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"abc")
    w.commit()
    with pytest.raises(RangeInvalid) as exc:
        registry.open_chunk("r", status.upload_id, start=10)
    assert exc.value.offset == 3
    with pytest.raises(RangeInvalid):
        registry.open_chunk("r", status.upload_id, start=0)  # overlapping


def test_concurrent_chunk_on_same_session_refused(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    with pytest.raises(RangeInvalid):
        registry.open_chunk("r", status.upload_id)
    w.abort()
    registry.open_chunk("r", status.upload_id).abort()


def test_aborted_chunk_leaves_no_bytes_and_hash_stays_right(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"good")
    w.commit()
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"BROKEN-PARTIAL")
    w.abort()
    assert registry.upload_status("r", status.upload_id).offset == 4
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"-more")
    w.commit()
    registry.finish_upload("r", status.upload_id, sha(b"good-more"))


def test_chunk_shorter_or_longer_than_announced_is_size_invalid(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id, length=10)
    w.write(b"12345")
    with pytest.raises(SizeInvalid):
        w.commit()
    w = registry.open_chunk("r", status.upload_id, length=3)
    with pytest.raises(SizeInvalid):
        w.write(b"12345")
    w.abort()
    assert registry.upload_status("r", status.upload_id).offset == 0


def test_wrong_digest_stores_nothing(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"payload")
    w.commit()
    with pytest.raises(DigestInvalid):
        registry.finish_upload("r", status.upload_id, sha(b"other"))
    assert list(registry.storage.walk("blobs")) == []
    with pytest.raises(BlobUploadUnknown):
        registry.upload_status("r", status.upload_id)


def test_sha512_digest_is_verified_by_rehash(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"512 content")
    w.commit()
    info = registry.finish_upload("r", status.upload_id, sha(b"512 content", "sha512"))
    assert info.path.startswith("blobs/sha512/")


def test_session_survives_restart_and_rehashes(tmp_path: Path, registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"first half,")
    w.commit()
    # A new Registry over the same storage: in-memory hash state is gone.
    again = Registry(FilesystemDriver(registry.config.root), ListPublisher(), registry.config)
    assert again.upload_status("r", status.upload_id).offset == 11
    w = again.open_chunk("r", status.upload_id, start=11)
    w.write(b" second half")
    w.commit()
    again.finish_upload("r", status.upload_id, sha(b"first half, second half"))


def test_stale_partial_file_from_kill_is_invisible_and_retry_works(registry: Registry) -> None:
    # Simulate kill -9 mid-upload: bytes in uploads/ and ingest/, never under blobs/.
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"half of a blob")  # no commit, process "dies"
    registry.storage.put_bytes("ingest/stray", b"junk")
    assert list(registry.storage.walk("blobs")) == []
    with pytest.raises(BlobUnknown):
        registry.stat_blob("r", sha(b"half of a blob"))
    fresh = Registry(FilesystemDriver(registry.config.root), ListPublisher(), registry.config)
    push_blob(fresh, "r", b"half of a blob")
    assert fresh.stat_blob("r", sha(b"half of a blob")).size == 14


def test_upload_in_wrong_repo_or_bad_id_is_unknown(registry: Registry) -> None:
    status = registry.start_upload("r")
    with pytest.raises(BlobUploadUnknown):
        registry.upload_status("other", status.upload_id)
    with pytest.raises(BlobUploadUnknown):
        registry.upload_status("r", "../../etc")


def test_finish_while_chunk_in_flight_refused(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    with pytest.raises(BlobUploadInvalid):
        registry.finish_upload("r", status.upload_id, sha(b""))
    w.abort()


def test_sweep_expires_idle_sessions(registry: Registry) -> None:
    old = registry.start_upload("r")
    registry.start_upload("r")
    assert registry.sweep_uploads(now=time.time() + 30) == 0
    assert registry.sweep_uploads(now=time.time() + 61) == 2
    with pytest.raises(BlobUploadUnknown):
        registry.upload_status("r", old.upload_id)


def test_concurrent_uploads_of_same_blob(registry: Registry) -> None:
    data = b"shared layer" * 1000
    a, b = registry.start_upload("r"), registry.start_upload("s")
    wa, wb = registry.open_chunk("r", a.upload_id), registry.open_chunk("s", b.upload_id)
    for i in range(0, len(data), 1000):
        wa.write(data[i : i + 1000])
        wb.write(data[i : i + 1000])
    wa.commit()
    wb.commit()
    registry.finish_upload("s", b.upload_id, sha(data))
    registry.finish_upload("r", a.upload_id, sha(data))
    assert registry.stat_blob("r", sha(data)).size == registry.stat_blob("s", sha(data)).size == len(data)
    assert len(list(registry.storage.walk("blobs"))) == 1


def test_mount(registry: Registry, publisher: ListPublisher) -> None:
    d = push_blob(registry, "src", b"mount me")
    assert registry.mount_blob("dst", d, "src") is not None
    assert registry.stat_blob("dst", d).size == 8
    assert registry.mount_blob("dst2", d, "nowhere") is None  # not in the named source
    assert registry.mount_blob("dst3", d, None) is not None  # anonymous mount of a stored blob
    assert registry.mount_blob("dst4", sha(b"absent"), None) is None
    assert "dockyard.registry.blob_mounted" in publisher.types()


def test_delete_blob_unlinks_only(registry: Registry) -> None:
    d = push_blob(registry, "r", b"bytes")
    registry.delete_blob("r", d)
    with pytest.raises(BlobUnknown):
        registry.stat_blob("r", d)
    assert registry.blob_exists(d) is not None  # reclaimed by GC, not by delete
    with pytest.raises(BlobUnknown):
        registry.delete_blob("r", d)


def test_manifest_push_get_tags_and_events(registry: Registry, publisher: ListPublisher) -> None:
    digest, _ = push_image(registry, "app", "v1")
    stored = registry.get_manifest("app", "v1")
    assert stored.digest == digest == Digest.of(stored.data)
    assert stored.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert registry.get_manifest("app", str(digest)).data == stored.data
    assert registry.list_tags("app") == ["v1"]
    assert publisher.types()[-2:] == ["dockyard.registry.manifest_pushed", "dockyard.registry.tag_changed"]
    assert publisher.events[-1].subject == "app:v1"


def test_manifest_by_digest_reference_must_match(registry: Registry) -> None:
    config = b"{}"
    push_blob(registry, "r", config)
    body = image_manifest(config, [])
    with pytest.raises(DigestInvalid):
        registry.put_manifest("r", str(sha(b"other")), body)
    result = registry.put_manifest("r", str(sha(body, "sha512")), body)
    assert result.digest.algorithm == "sha512"
    assert registry.get_manifest("r", str(result.digest)).data == body


def test_manifest_missing_blob_rejected(registry: Registry) -> None:
    config = b"{}"
    push_blob(registry, "r", config)
    with pytest.raises(ManifestBlobUnknown):
        registry.put_manifest("r", "v1", image_manifest(config, [b"never pushed"]))
    # a blob in another repository does not count
    push_blob(registry, "other", b"elsewhere")
    with pytest.raises(ManifestBlobUnknown):
        registry.put_manifest("r", "v1", image_manifest(config, [b"elsewhere"]))
    assert registry.list_tags("r") == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 1}',
        b'{"schemaVersion": 2, "mediaType": "text/plain"}',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
        b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, "layers": []}',
        b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:'
        + b"a" * 64
        + b'", "size": -1}}',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": {}}',
    ],
)
def test_malformed_manifests_rejected(registry: Registry, body: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        registry.put_manifest("r", "v1", body)


def test_manifest_size_limit(tmp_path: Path) -> None:
    config = RegistryConfig(root=tmp_path, manifest_max_bytes=100)
    reg = Registry(FilesystemDriver(tmp_path), ListPublisher(), config)
    with pytest.raises(ManifestTooLarge):
        reg.put_manifest("r", "v1", b" " * 101)


def test_index_requires_children(registry: Registry) -> None:
    child, _ = push_image(registry, "multi", "amd64")
    size = registry.get_manifest("multi", "amd64").size
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(child), "size": size}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    registry.put_manifest("multi", "latest", json.dumps(index).encode())
    index["manifests"] = [{**entry, "digest": str(sha(b"nope"))}]
    with pytest.raises(ManifestBlobUnknown):
        registry.put_manifest("multi", "broken", json.dumps(index).encode())


def test_tags_pagination_and_unknown_repo(registry: Registry) -> None:
    for tag in ["b", "a", "d", "c"]:
        push_image(registry, "r", tag, seed=tag.encode())
    assert registry.list_tags("r") == ["a", "b", "c", "d"]
    assert registry.list_tags("r", n=2) == ["a", "b"]
    assert registry.list_tags("r", n=2, last="b") == ["c", "d"]
    assert registry.list_tags("r", n=0) == []
    with pytest.raises(NameUnknown):
        registry.list_tags("nope")


def test_catalog(registry: Registry) -> None:
    for name in ["zeta", "alpha/one", "alpha/one/deeper", "mid"]:
        push_blob(registry, name, name.encode())
    assert registry.list_repositories() == ["alpha/one", "alpha/one/deeper", "mid", "zeta"]
    assert registry.list_repositories(n=2, last="alpha/one") == ["alpha/one/deeper", "mid"]


def test_unknown_manifest_and_name(registry: Registry) -> None:
    with pytest.raises(NameUnknown):
        registry.get_manifest("nope", "v1")
    push_image(registry, "r", "v1")
    with pytest.raises(ManifestUnknown):
        registry.get_manifest("r", "v2")
    with pytest.raises(ManifestUnknown):
        registry.get_manifest("r", ".invalid-tag")
    with pytest.raises(TagInvalid):
        registry.put_manifest("r", ".invalid-tag", b"{}")


def test_referrers_and_artifact_type_filter(registry: Registry) -> None:
    subject, _ = push_image(registry, "r", "v1")
    size = registry.get_manifest("r", "v1").size
    subj = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(subject), "size": size}
    digests = {}
    for art in ["application/vnd.sig", "application/vnd.sbom"]:
        cfg = art.encode()
        push_blob(registry, "r", cfg)
        body = json.loads(image_manifest(cfg, []))
        body["config"]["mediaType"] = "application/vnd.oci.empty.v1+json"
        body["artifactType"] = art
        body["subject"] = subj
        result = registry.put_manifest("r", str(sha(json.dumps(body).encode())), json.dumps(body).encode())
        assert result.subject == subject
        digests[art] = result.digest
    all_refs = registry.referrers("r", subject)
    assert {r["artifactType"] for r in all_refs} == {"application/vnd.sig", "application/vnd.sbom"}
    sigs = registry.referrers("r", subject, "application/vnd.sig")
    assert [r["digest"] for r in sigs] == [str(digests["application/vnd.sig"])]
    registry.delete_manifest("r", str(digests["application/vnd.sig"]))
    assert registry.referrers("r", subject, "application/vnd.sig") == []
    assert registry.referrers("r", sha(b"unknown")) == []


def test_delete_manifest_removes_its_tags(registry: Registry, publisher: ListPublisher) -> None:
    digest, _ = push_image(registry, "r", "v1")
    registry.put_manifest("r", "also", registry.get_manifest("r", "v1").data)
    registry.delete_manifest("r", str(digest))
    assert registry.list_tags("r") == []
    with pytest.raises(ManifestUnknown):
        registry.get_manifest("r", str(digest))
    assert publisher.types().count("dockyard.registry.tag_deleted") == 2
    assert publisher.types()[-1] == "dockyard.registry.manifest_deleted"


def test_delete_tag_keeps_manifest(registry: Registry) -> None:
    digest, _ = push_image(registry, "r", "v1")
    registry.delete_manifest("r", "v1")
    assert registry.list_tags("r") == []
    assert registry.get_manifest("r", str(digest)).digest == digest
    with pytest.raises(ManifestUnknown):
        registry.delete_tag("r", "v1")


def test_usage(registry: Registry) -> None:
    push_image(registry, "r", "v1")
    usage = registry.usage()
    assert usage.repositories == 1 and usage.blobs == 3
    assert usage.bytes == sum(i.size for i in registry.storage.walk("blobs"))


def test_events_go_to_a_real_outbox(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    reg = Registry(
        FilesystemDriver(tmp_path / "root"), OutboxPublisher(outbox), RegistryConfig(root=tmp_path)
    )
    push_image(reg, "r", "v1")
    subjects = [p.event.nats_subject for p in outbox.pending()]
    assert subjects == ["dockyard.registry.manifest_pushed", "dockyard.registry.tag_changed"]


DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.mark.parametrize(
    ("accept", "media_type", "ok"),
    [
        ([], "application/vnd.oci.image.index.v1+json", True),
        (["*/*"], "application/vnd.oci.image.index.v1+json", True),
        (["application/json"], "application/vnd.oci.image.manifest.v1+json", True),
        (
            ["application/vnd.docker.distribution.manifest.v2+json"],
            "application/vnd.oci.image.index.v1+json",
            False,
        ),
        (
            [DOCKER_V2 + ", application/vnd.oci.image.index.v1+json;q=0.5"],
            "application/vnd.oci.image.index.v1+json",
            True,
        ),
        (
            ["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"],
            "application/vnd.oci.image.index.v1+json",
            True,
        ),
    ],
)
def test_accept_negotiation(accept: list[str], media_type: str, ok: bool) -> None:
    from dockyard.registry.http import accepts

    assert accepts(accept, media_type) is ok
