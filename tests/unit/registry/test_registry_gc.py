"""Mark-and-sweep GC: what it keeps, what it frees, grace, uploads in progress, dry runs, races."""

from __future__ import annotations

import json
import os
import time

from registry_unit_support import ListPublisher, push_blob, push_image

from dockyard.core.oci.digest import Digest
from dockyard.registry.gc import MarkSet, run_gc
from dockyard.registry.registry import Registry, blob_path


def age(registry: Registry, digest: Digest, seconds: float) -> None:
    path = registry.storage.local_path(blob_path(digest))
    assert path is not None
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_keeps_referenced_frees_unreferenced(registry: Registry, publisher: ListPublisher) -> None:
    manifest, blobs = push_image(registry, "r", "v1")
    orphan = push_blob(registry, "r", b"orphan layer")
    result = run_gc(registry)
    assert result.deleted == (str(orphan),)
    assert result.freed_bytes == len(b"orphan layer")
    assert result.marked == 3
    for d in [manifest, *blobs]:
        assert registry.blob_exists(d) is not None
    assert registry.blob_exists(orphan) is None
    # the repository link to the swept blob went with it
    assert registry.storage.stat(f"repositories/r/_layers/{orphan.algorithm}/{orphan.hex}") is None
    assert publisher.events[-1].nats_subject == "dockyard.registry.gc_finished"
    assert publisher.events[-1].data["deleted_blobs"] == 1


def test_untagged_manifest_is_still_a_root_deleted_manifest_is_not(registry: Registry) -> None:
    manifest, blobs = push_image(registry, "r", "v1")
    registry.delete_tag("r", "v1")
    assert run_gc(registry).deleted_blobs == 0
    registry.delete_manifest("r", str(manifest))
    result = run_gc(registry)
    assert set(result.deleted) == {str(manifest), *map(str, blobs)}


def test_shared_blob_survives_while_any_repo_references_it(registry: Registry) -> None:
    m1, blobs = push_image(registry, "a", "v1", seed=b"s")
    push_image(registry, "b", "v1", seed=b"s")
    registry.delete_manifest("a", str(m1))
    assert run_gc(registry).deleted_blobs == 0
    assert all(registry.blob_exists(d) for d in blobs)


def test_index_children_and_subject_are_marked(registry: Registry) -> None:
    child, child_blobs = push_image(registry, "r", "amd64")
    size = registry.get_manifest("r", "amd64").size
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": str(child), "size": size}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]}
    registry.put_manifest("r", "latest", json.dumps(index).encode())
    registry.delete_tag("r", "amd64")
    assert run_gc(registry).deleted_blobs == 0
    assert registry.blob_exists(child) and all(registry.blob_exists(d) for d in child_blobs)


def test_grace_period_protects_fresh_blobs(registry: Registry) -> None:
    orphan = push_blob(registry, "r", b"just uploaded")
    result = run_gc(registry, grace=3600)
    assert result.deleted_blobs == 0 and result.kept_in_grace == 1
    age(registry, orphan, 7200)
    assert run_gc(registry, grace=3600).deleted == (str(orphan),)


def test_upload_in_progress_untouched(registry: Registry) -> None:
    status = registry.start_upload("r")
    w = registry.open_chunk("r", status.upload_id)
    w.write(b"in flight")
    w.commit()
    run_gc(registry)
    assert registry.upload_status("r", status.upload_id).offset == 9


def test_dry_run_reports_and_deletes_nothing(registry: Registry) -> None:
    push_image(registry, "r", "v1")
    orphans = [push_blob(registry, "r", b"o1"), push_blob(registry, "r", b"o22")]
    dry = run_gc(registry, dry_run=True)
    assert dry.dry_run and dry.deleted_blobs == 2 and dry.freed_bytes == 5
    assert all(registry.blob_exists(d) for d in orphans)
    real = run_gc(registry)
    assert (real.deleted_blobs, real.freed_bytes) == (dry.deleted_blobs, dry.freed_bytes)


def test_blob_made_reachable_during_gc_is_not_swept(registry: Registry) -> None:
    orphan = push_blob(registry, "r", b"racing")
    # A manifest push that happens between mark and sweep: simulate by hooking mark's end.
    import dockyard.registry.gc as gc_mod

    real_mark = gc_mod.mark

    def mark_then_push(reg: Registry) -> MarkSet:
        marked = real_mark(reg)
        registry.mount_blob("other", orphan, "r")  # makes it reachable under the gc lock
        return marked

    gc_mod.mark = mark_then_push  # type: ignore[assignment]
    try:
        result = run_gc(registry)
    finally:
        gc_mod.mark = real_mark
    assert str(orphan) not in result.deleted
    assert registry.blob_exists(orphan) is not None


def test_mark_set_holds_exactly_what_was_added_across_growth() -> None:
    def digest(i: int, algorithm: str = "sha256") -> Digest:
        return Digest.of(str(i).encode(), algorithm)

    marks = MarkSet()
    added = [digest(i) for i in range(5000)] + [digest(i, "sha512") for i in range(100)]
    marks.update(added)
    marks.update(added[:100])  # marking twice counts once
    zero = Digest("sha256", "0" * 16 + "f" * 48)  # a zero prefix still marks
    marks.add(zero)
    assert len(marks) == 5101  # grew from 1,024 slots several times, keeping every key
    assert all(d in marks for d in added) and zero in marks
    assert not any(digest(i) in marks for i in range(5000, 10_000))
    assert "sha256:" + "0" * 64 not in marks  # only digests are members
