"""Online mark-and-sweep garbage collection of blobs.

Mark: every manifest revision of every repository is a root (tagged or not: untagged manifests
are still pullable by digest), together with what it references — config and layers, the
children of an index, and, when present, its subject (a referrer keeps what it annotates alive
only as far as the subject is stored at all). Sweep: every file under ``blobs/`` not marked is
deleted, with the repository ``_layers`` links pointing at it, unless

* it was written less than ``grace`` seconds ago (a client may have uploaded layers and be about
  to push the manifest that references them), or
* it became reachable while GC ran (the registry records such blobs under its ``gc_lock``; a
  deletion and a "make reachable" step never interleave, see ``Registry.gc_session``).

Upload sessions in progress live under ``uploads/``, never under ``blobs/``, so GC cannot touch
them; expired ones are swept first. Cost: one walk of ``repositories/`` and ``blobs/``, one read
of each manifest (≤ the manifest size limit each); memory is one ``MarkSet``, 16-32 bytes per
reachable blob in a single buffer (see there why not a ``set``).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from dockyard.core.events import Subject
from dockyard.core.oci.digest import Digest
from dockyard.registry.registry import Registry, blob_path

log = structlog.get_logger("dockyard.registry.gc")


@dataclass(frozen=True, slots=True)
class GCResult:
    """What a GC run found and did. With ``dry_run`` nothing was deleted; counts say what would be."""

    dry_run: bool
    marked: int
    deleted_blobs: int
    freed_bytes: int
    kept_in_grace: int
    expired_uploads: int
    duration_seconds: float
    deleted: tuple[str, ...] = field(default=(), repr=False)


class MarkSet:
    """The digests GC marked reachable: the first 64 bits of each, in one open-addressing table.

    A ``set`` of ``Digest`` objects costs ~270 bytes per blob in small objects that pymalloc keeps
    after the run (arenas pinned by the objects the server allocated meanwhile), so a registry's
    memory rose to each GC's peak and stayed there (bench/soak.py: +14 MB in 10 minutes as its
    store grew to 56,000 blobs). This is one ``array`` buffer, 16-32 bytes per blob, allocated
    whole and freed whole.

    Two digests sharing their first 64 bits read as one, which can only keep an unreferenced blob
    (never delete a referenced one); with random digests that takes ~4 billion blobs to see once.
    """

    def __init__(self) -> None:
        self._slots = array("Q", [0]) * 1024  # 0 = empty; the load is kept at or below one half
        self._count = 0

    @staticmethod
    def _key(digest: Digest) -> int:
        return int(digest.hex[:16], 16) or 1  # 0 means "empty"; a zero prefix shares 1's slot

    @staticmethod
    def _slot(slots: array[int], key: int) -> int:
        """Where ``key`` is, or the empty slot where it would go (linear probing)."""
        mask = len(slots) - 1
        i = key & mask  # the low bits of a hash prefix are already uniform
        while slots[i] and slots[i] != key:
            i = (i + 1) & mask
        return i

    def add(self, digest: Digest) -> None:
        key = self._key(digest)
        i = self._slot(self._slots, key)
        if self._slots[i]:
            return
        self._slots[i] = key
        self._count += 1
        if 2 * self._count > len(self._slots):
            bigger = array("Q", [0]) * (2 * len(self._slots))
            for old in self._slots:
                if old:
                    bigger[self._slot(bigger, old)] = old
            self._slots = bigger

    def update(self, digests: Iterable[Digest]) -> None:
        for digest in digests:
            self.add(digest)

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, Digest):
            return False
        return bool(self._slots[self._slot(self._slots, self._key(digest))])

    def __len__(self) -> int:
        return self._count


def mark(registry: Registry) -> MarkSet:
    """Every blob digest reachable from a manifest revision of any repository."""
    marked = MarkSet()
    for name in registry.list_repositories():
        for digest in registry.manifest_digests(name):
            marked.add(digest)
            manifest = registry.read_manifest_blob(digest)
            if manifest is None:
                continue
            marked.update(d.digest for d in manifest.references())
            if manifest.subject is not None:
                marked.add(manifest.subject.digest)
    return marked


def run_gc(registry: Registry, dry_run: bool = False, grace: float | None = None) -> GCResult:
    """Mark, then sweep unreferenced blobs older than ``grace`` (default ``config.gc_grace``).

    Safe to run while the registry serves requests. Publishes REGISTRY_GC_FINISHED (also for a dry run).
    """
    started = time.monotonic()
    grace = registry.config.gc_grace if grace is None else grace
    expired = 0 if dry_run else registry.sweep_uploads()
    storage = registry.storage
    with registry.gc_session() as touched:
        marked = mark(registry)
        cutoff = time.time() - grace
        deleted: list[str] = []
        freed = in_grace = 0
        for info in storage.walk("blobs"):
            _, alg, hex_ = info.path.split("/", 2)
            try:
                digest = Digest.parse(f"{alg}:{hex_}")
            except Exception:
                continue  # not ours; leave foreign files alone
            if digest in marked:
                continue
            if info.mtime >= cutoff:
                in_grace += 1
                continue
            if not dry_run:
                with registry.gc_lock:
                    if digest in touched:
                        continue
                    storage.delete(blob_path(digest))
            deleted.append(str(digest))
            freed += info.size
        if not dry_run and deleted:
            _unlink_layers(registry, {Digest.parse(d) for d in deleted})
    result = GCResult(
        dry_run=dry_run,
        marked=len(marked),
        deleted_blobs=len(deleted),
        freed_bytes=freed,
        kept_in_grace=in_grace,
        expired_uploads=expired,
        duration_seconds=round(time.monotonic() - started, 3),
        deleted=tuple(deleted),
    )
    log.info(
        "gc finished",
        dry_run=dry_run,
        marked=result.marked,
        deleted=result.deleted_blobs,
        freed_bytes=freed,
        kept_in_grace=in_grace,
    )
    registry.emit(
        Subject.REGISTRY_GC_FINISHED,
        "gc",
        dry_run=dry_run,
        deleted_blobs=result.deleted_blobs,
        freed_bytes=freed,
        marked=result.marked,
    )
    return result


def _unlink_layers(registry: Registry, gone: set[Digest]) -> None:
    """Drop ``_layers`` links to deleted blobs, so no repository claims content it cannot serve."""
    for name in registry.list_repositories():
        base = f"repositories/{name}/_layers"
        for alg in registry.storage.list(base):
            for hex_ in registry.storage.list(f"{base}/{alg}"):
                try:
                    digest = Digest.parse(f"{alg}:{hex_}")
                except Exception:
                    continue
                if digest in gone:
                    with registry.gc_lock:
                        if registry.storage.stat(blob_path(digest)) is None:
                            registry.storage.delete(f"{base}/{alg}/{hex_}")
