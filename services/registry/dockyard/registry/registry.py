"""The registry core: repositories, blobs, upload sessions, manifests, tags and referrers.

It knows nothing of HTTP: the HTTP layer (``dockyard.registry.http``) parses a request, calls one
method here and renders the result; the gRPC admin servicer does the same. Errors are the typed
ones of ``dockyard.registry.errors``. Events are published after the change they describe is on disk.

Public surface for ``app.py`` / ``servicer.py``::

    Registry(storage: StorageDriver, publisher: Publisher, config: RegistryConfig)
    list_repositories(n: int | None = None, last: str = "") -> list[str]
    list_tags(name, n=None, last="") -> list[str]
    get_manifest(name, reference) -> StoredManifest         # inspect: digest, media type, bytes, parsed
    delete_manifest(name, digest_or_tag) -> None            # by digest: manifest + its tags; by tag: tag only
    delete_tag(name, tag) -> None
    usage() -> Usage                                        # blob count and bytes on disk
    sweep_uploads(now: float | None = None) -> int          # expire stale upload sessions
    dockyard.registry.gc.run_gc(registry, dry_run=False) -> GCResult

Threading: every method is synchronous, may block on disk I/O (fsync), and is safe to call from
several threads at once (the HTTP layer runs the ones that fsync in a worker thread). Mutations
are renames of whole files, so readers never see partial state. A single lock serialises only
the few steps that must not interleave with a GC sweep (see ``gc.py``).

Upload hashing (hashlib states cannot be persisted): while a session lives in this process its
sha256 is computed incrementally as chunks stream in, so ``finish_upload`` never re-reads the
bytes. After a restart (or when the client finishes with a sha512 digest, or a chunk was rolled
back past what a hash copy covers) the data file is re-hashed once from disk, streaming, at finish.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from dockyard.core.events import Publisher, Subject, new_event
from dockyard.core.oci.digest import Digest, DigestInvalid, Hasher, is_digest, new_hasher
from dockyard.core.oci.manifest import Descriptor, Manifest, ManifestInvalid, parse_manifest
from dockyard.core.oci.reference import REPOSITORY
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
    TooManyTags,
    TooManyUploads,
)
from dockyard.registry.storage import CHUNK_SIZE, StorageDriver, Writer

log = structlog.get_logger("dockyard.registry")

# Matched with ``fullmatch``: ``$`` would also accept a trailing newline ("name\n").
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
UPLOAD_ID_RE = re.compile(r"[a-f0-9]{32}")
NAME_MAX = 255


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NameInvalid (also blocks traversal)."""
    if len(name) > NAME_MAX or not REPOSITORY.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name[:300]!r}", name=name[:300])
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise TagInvalid(f"invalid tag {tag[:200]!r}", tag=tag[:200])
    return tag


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    path: str  # logical storage path


@dataclass(frozen=True, slots=True)
class UploadStatus:
    repository: str
    upload_id: str
    offset: int  # bytes received so far == where the next chunk must start


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes
    manifest: Manifest

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class PutManifestResult:
    digest: Digest
    subject: Digest | None
    tag: str | None  # the first of ``tags`` (the reference when it was a tag)
    tags: tuple[str, ...] = ()  # every tag now pointing at ``digest`` because of this push


@dataclass(frozen=True, slots=True)
class Usage:
    repositories: int
    blobs: int
    bytes: int


@dataclass(slots=True)
class _LiveUpload:
    """In-process state of an upload session; lost on restart (then the bytes are re-hashed)."""

    hasher: Hasher | None  # hash (of ``algorithm``) of data[0:hashed]
    hashed: int
    busy: bool = False
    algorithm: str = "sha256"


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _paginate(items: Iterable[str], n: int | None, last: str) -> list[str]:
    ordered = sorted(i for i in items if not last or i > last)
    return ordered if n is None else ordered[: max(n, 0)]


class ChunkWriter:
    """One chunk being streamed into an upload session; ``commit`` or ``abort`` exactly once.

    ``abort`` (or a ``commit`` whose byte count disagrees with what the client announced) truncates
    the session back to where the chunk started, so a broken request leaves no bytes behind.
    """

    def __init__(
        self,
        registry: Registry,
        status: UploadStatus,
        live: _LiveUpload,
        writer: Writer,
        expected: int | None,
    ) -> None:
        self._registry = registry
        self._status = status
        self._live = live
        self._writer = writer
        self._expected = expected
        self._start = status.offset
        # Hashing continues incrementally only if the live hash covers every byte before this chunk.
        self._hasher = live.hasher if live.hasher is not None and live.hashed == self._start else None
        self._saved = self._hasher.copy() if self._hasher is not None else None
        self._done = False

    @property
    def written(self) -> int:
        return self._writer.size - self._start

    def write(self, data: bytes) -> None:
        """Append ``data``. Cost: one buffered write and a hash update; no fsync."""
        if self._expected is not None and self.written + len(data) > self._expected:
            raise SizeInvalid("chunk is longer than announced", expected=self._expected)
        self._writer.write(data)
        if self._hasher is not None:
            self._hasher.update(data)

    def commit(self) -> UploadStatus:
        if self._expected is not None and self.written != self._expected:
            got = self.written
            self.abort()
            raise SizeInvalid(f"chunk has {got} bytes, announced {self._expected}", received=got)
        self._done = True
        end = self._writer.size
        self._writer.close()
        if self._hasher is not None:
            self._live.hasher, self._live.hashed = self._hasher, end
        self._live.busy = False
        return UploadStatus(self._status.repository, self._status.upload_id, end)

    def abort(self) -> None:
        """Roll back: forget every byte of this chunk. Idempotent."""
        if self._done:
            return
        self._done = True
        try:
            self._writer.truncate(self._start)
        finally:
            self._writer.close()
            if self._saved is not None:
                self._live.hasher, self._live.hashed = self._saved, self._start
            self._live.busy = False


class Registry:
    """The registry's state over a ``StorageDriver``. See the module docstring for the contract."""

    def __init__(self, storage: StorageDriver, publisher: Publisher, config: RegistryConfig) -> None:
        self.storage = storage
        self.publisher = publisher
        self.config = config
        self._source = config.source or f"/dockyard/registry/{socket.gethostname()}"
        self._uploads: dict[str, _LiveUpload] = {}
        self._uploads_lock = threading.Lock()
        # Open sessions per repository (for the cap), loaded from uploads/ on first use.
        self._open: dict[str, set[str]] | None = None
        # Serialises "make a blob reachable" steps against a GC sweep's deletions (see gc.py).
        self.gc_lock = threading.Lock()
        self._gc_touched: set[Digest] | None = None

    # ----------------------------------------------------------------- paths

    @staticmethod
    def _repo(name: str) -> str:
        return f"repositories/{validate_name(name)}"

    def _layer_link(self, name: str, d: Digest) -> str:
        return f"{self._repo(name)}/_layers/{d.algorithm}/{d.hex}"

    def _revision(self, name: str, d: Digest) -> str:
        return f"{self._repo(name)}/_manifests/revisions/{d.algorithm}/{d.hex}"

    def _tag_path(self, name: str, tag: str) -> str:
        return f"{self._repo(name)}/_manifests/tags/{validate_tag(tag)}"

    def _referrer_dir(self, name: str, subject: Digest) -> str:
        return f"{self._repo(name)}/_referrers/{subject.algorithm}/{subject.hex}"

    def repository_exists(self, name: str) -> bool:
        base = self._repo(name)
        return any(self.storage.stat(f"{base}/{part}") is not None for part in ("_layers", "_manifests"))

    # ----------------------------------------------------------------- GC coordination

    def _mark_reachable(self, digests: Iterable[Digest]) -> None:
        """Tell a running GC sweep these blobs just became reachable. Caller holds ``gc_lock``."""
        if self._gc_touched is not None:
            self._gc_touched.update(digests)

    @contextmanager
    def gc_session(self) -> Iterator[set[Digest]]:
        """Used by gc.py: while open, every blob made reachable is recorded in the yielded set."""
        with self.gc_lock:
            touched: set[Digest] = set()
            self._gc_touched = touched
        try:
            yield touched
        finally:
            with self.gc_lock:
                self._gc_touched = None

    # ----------------------------------------------------------------- events

    def emit(self, subject: Subject, entity: str, **data: Any) -> None:
        try:
            self.publisher.publish(new_event(subject, self._source, entity, data))
        except Exception:  # the change is durable; a lost event must not turn it into an error
            log.exception("event publish failed", subject=str(subject), entity=entity)

    # ----------------------------------------------------------------- blobs

    def stat_blob(self, name: str, digest: Digest) -> BlobInfo:
        """The blob if it is linked into ``name`` (as a layer or a manifest); else BlobUnknown."""
        linked = self.storage.stat(self._layer_link(name, digest)) or self.storage.stat(
            self._revision(name, digest)
        )
        info = self.storage.stat(blob_path(digest)) if linked else None
        if info is None:
            raise BlobUnknown(f"blob {digest} unknown to repository {name}", digest=str(digest))
        return BlobInfo(digest, info.size, blob_path(digest))

    def blob_exists(self, digest: Digest) -> BlobInfo | None:
        """The blob if stored at all, in any repository."""
        info = self.storage.stat(blob_path(digest))
        return BlobInfo(digest, info.size, blob_path(digest)) if info else None

    def delete_blob(self, name: str, digest: Digest) -> None:
        """Unlink the blob from ``name``; its bytes go at the next GC if nothing else references them."""
        link = self._layer_link(name, digest)
        if self.storage.stat(link) is None:
            raise BlobUnknown(f"blob {digest} unknown to repository {name}", digest=str(digest))
        self.storage.delete(link)
        log.info("blob unlinked", repository=name, digest=str(digest))

    def repositories_linking(self, digest: Digest) -> list[str]:
        """Repositories that hold ``digest`` as a layer or a manifest. Cost: a walk of repositories/."""
        return [
            repo
            for repo in self.list_repositories()
            if self.storage.stat(self._layer_link(repo, digest)) is not None
            or self.storage.stat(self._revision(repo, digest)) is not None
        ]

    def mount_blob(self, name: str, digest: Digest, from_name: str | None) -> BlobInfo | None:
        """Link an existing blob into ``name`` without upload; None if it cannot be mounted.

        With ``from_name`` the blob must be linked there (the caller checked pull access to it);
        without, any stored blob may be mounted. That is only right where everyone may pull
        everything (no auth): with auth on, the HTTP layer always names a source the caller may pull.
        """
        validate_name(name)
        if from_name is not None:
            try:
                self.stat_blob(from_name, digest)
            except (BlobUnknown, NameInvalid):
                return None
        with self.gc_lock:
            info = self.blob_exists(digest)
            if info is None:
                return None
            self._mark_reachable([digest])
            self.storage.put_bytes(self._layer_link(name, digest), b"")
        self.emit(
            Subject.REGISTRY_BLOB_MOUNTED,
            f"{name}@{digest}",
            repository=name,
            digest=str(digest),
            source_repository=from_name or "",
        )
        return info

    # ----------------------------------------------------------------- uploads

    def _session(self, upload_id: str) -> str:
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            raise BlobUploadUnknown(f"upload {upload_id[:100]!r} unknown")
        return f"uploads/{upload_id}"

    def start_upload(self, name: str, algorithm: str = "sha256") -> UploadStatus:
        """Open an upload session for ``name``; it lives on disk until finished, cancelled or expired.

        ``algorithm`` is the digest the client announced (``?digest-algorithm=``): the session hashes
        with it while bytes stream in. At most ``config.max_uploads_per_repository`` sessions may be
        open per repository (TooManyUploads beyond). A full disk raises StorageFull and leaves nothing.
        """
        validate_name(name)
        hasher = new_hasher(algorithm)
        upload_id = uuid.uuid4().hex
        with self._uploads_lock:
            open_ = self._open_sessions()
            mine = open_.setdefault(name, set())
            if len(mine) >= self.config.max_uploads_per_repository:
                raise TooManyUploads(
                    f"repository {name} has {len(mine)} open upload sessions, the most allowed; "
                    "finish or cancel some (or wait for them to expire)",
                    limit=self.config.max_uploads_per_repository,
                )
            mine.add(upload_id)
            # Registered before any file exists, so a sweep running now leaves the session alone.
            self._uploads[upload_id] = _LiveUpload(hasher, 0, algorithm=algorithm)
        base = self._session(upload_id)
        try:
            self.storage.writer(f"{base}/data").close()
            state = {"repository": name, "started": time.time(), "algorithm": algorithm}
            self.storage.put_bytes(f"{base}/state.json", json.dumps(state).encode())
        except BaseException:
            self.storage.delete(base)
            self._forget(upload_id)
            raise
        log.debug("upload started", repository=name, upload=upload_id)
        return UploadStatus(name, upload_id, 0)

    def _open_sessions(self) -> dict[str, set[str]]:
        """Open sessions by repository; the first call reads uploads/. Caller holds ``_uploads_lock``."""
        if self._open is None:
            self._open = {}
            for upload_id in self.storage.list("uploads"):
                try:
                    state = json.loads(self.storage.read_bytes(f"uploads/{upload_id}/state.json", 64 << 10))
                    self._open.setdefault(str(state["repository"]), set()).add(upload_id)
                except Exception:
                    continue  # half-made or foreign: the sweep will take it
        return self._open

    def upload_status(self, name: str, upload_id: str) -> UploadStatus:
        return self._upload_state(name, upload_id)[0]

    def _upload_state(self, name: str, upload_id: str) -> tuple[UploadStatus, dict[str, Any]]:
        base = self._session(upload_id)
        validate_name(name)
        try:
            state = json.loads(self.storage.read_bytes(f"{base}/state.json", 64 << 10))
        except Exception:
            raise BlobUploadUnknown(f"upload {upload_id} unknown", upload=upload_id) from None
        info = self.storage.stat(f"{base}/data")
        if not isinstance(state, dict) or state.get("repository") != name or info is None:
            raise BlobUploadUnknown(f"upload {upload_id} unknown", upload=upload_id)
        return UploadStatus(name, upload_id, info.size), state

    def _live(self, upload_id: str, algorithm: str = "sha256") -> _LiveUpload:
        with self._uploads_lock:
            live = self._uploads.get(upload_id)
            if live is None:  # the process restarted since the session began
                live = self._uploads[upload_id] = _LiveUpload(None, 0, algorithm=algorithm)
            return live

    def open_chunk(
        self, name: str, upload_id: str, start: int | None = None, length: int | None = None
    ) -> ChunkWriter:
        """Begin appending to a session. ``start`` (from Content-Range) must equal the current offset,
        else RangeInvalid carrying the offset; ``length`` is what the client announced, checked at commit.
        One chunk at a time per session: a concurrent one gets RangeInvalid too.
        """
        status = self.upload_status(name, upload_id)
        live = self._live(upload_id)
        with self._uploads_lock:
            if live.busy or (start is not None and start != status.offset):
                raise RangeInvalid(
                    f"chunk must start at {status.offset}", offset=status.offset, upload=upload_id
                )
            live.busy = True
        try:
            # The sweep deletes only sessions that are not busy, under the same lock: once busy is
            # set, the session either still exists here or was swept before (then it is unknown).
            status = self.upload_status(name, upload_id)
            if start is not None and start != status.offset:
                raise RangeInvalid(
                    f"chunk must start at {status.offset}", offset=status.offset, upload=upload_id
                )
            writer = self.storage.writer(f"{self._session(upload_id)}/data", append=True)
        except BaseException:
            live.busy = False
            raise
        return ChunkWriter(self, status, live, writer, length)

    def finish_upload(self, name: str, upload_id: str, digest: Digest) -> BlobInfo:
        """Verify the session's bytes hash to ``digest``, commit them as a blob linked into ``name``.

        On a mismatch the session is discarded (nothing is stored) and DigestInvalid raised. Cost:
        one fsync and two renames; a re-read of the data only when the hash could not be kept live.
        """
        status, state = self._upload_state(name, upload_id)
        base = self._session(upload_id)
        live = self._live(upload_id, str(state.get("algorithm") or "sha256"))
        if live.busy:
            raise BlobUploadInvalid("a chunk is still being written to this upload", upload=upload_id)
        live_ok = live.hasher is not None and live.hashed == status.offset
        if live_ok and live.hasher is not None and digest.algorithm == live.algorithm:
            actual = live.hasher.hexdigest()
        else:
            actual = self._hash_file(f"{base}/data", digest.algorithm)
        if actual != digest.hex:
            self.cancel_upload(name, upload_id)
            raise DigestInvalid(
                f"upload content has digest {digest.algorithm}:{actual}, not {digest}", digest=str(digest)
            )
        # fsync the data before it becomes visible under blobs/ (it was written without syncs).
        self.storage.writer(f"{base}/data", append=True).close(sync=True)
        with self.gc_lock:
            self.storage.move(f"{base}/data", blob_path(digest))
            self._mark_reachable([digest])
            self.storage.put_bytes(self._layer_link(name, digest), b"")
        self.storage.delete(base)
        self._forget(upload_id)
        log.info("blob committed", repository=name, digest=str(digest), size=status.offset)
        return BlobInfo(digest, status.offset, blob_path(digest))

    def _hash_file(self, path: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        with self.storage.reader(path) as fh:
            while chunk := fh.read(CHUNK_SIZE):
                hasher.update(chunk)
        return hasher.hexdigest()

    def cancel_upload(self, name: str, upload_id: str) -> None:
        self.upload_status(name, upload_id)
        self.storage.delete(self._session(upload_id))
        self._forget(upload_id)

    def _forget(self, upload_id: str) -> None:
        with self._uploads_lock:
            self._forget_locked(upload_id)

    def _forget_locked(self, upload_id: str) -> None:
        self._uploads.pop(upload_id, None)
        if self._open is not None:
            for repo, ids in list(self._open.items()):
                if upload_id in ids:
                    ids.discard(upload_id)
                    if not ids:
                        del self._open[repo]
                    break

    def active_uploads(self) -> int:
        return len(self.storage.list("uploads"))

    def sweep_uploads(self, now: float | None = None) -> int:
        """Delete sessions idle longer than ``config.upload_expiry`` and stray ingest files; returns count."""
        now = time.time() if now is None else now
        cutoff = now - self.config.upload_expiry
        swept = 0
        for upload_id in self.storage.list("uploads"):
            base = f"uploads/{upload_id}"
            # The directory's own time counts: a session start_upload has just made may hold no
            # file yet, and must not look "idle since forever".
            here = self.storage.stat(base)
            if here is None:
                continue
            stamps = [here.mtime, *(i.mtime for i in self.storage.walk(base))]
            if max(stamps) >= cutoff:
                continue
            with self._uploads_lock:  # open_chunk marks busy under this lock before touching files
                if (live := self._uploads.get(upload_id)) is not None and live.busy:
                    continue
                self.storage.delete(base)
                self._forget_locked(upload_id)
            swept += 1
        for info in self.storage.walk("ingest"):
            if info.mtime < cutoff:
                self.storage.delete(info.path)
        if swept:
            log.info("upload sessions expired", count=swept)
        return swept

    # ----------------------------------------------------------------- manifests

    def resolve(self, name: str, reference: str) -> Digest:
        """The digest a tag or digest reference names in ``name``; ManifestUnknown if absent."""
        if is_digest(reference):
            digest = Digest.parse(reference)
        else:
            # An invalid tag cannot name anything: on reads that is "unknown" (404), not 400.
            raw = self._read_tag(name, reference) if TAG_RE.fullmatch(reference) else None
            if raw is None:
                raise self._manifest_unknown(name, reference)
            digest = Digest.parse(raw)
        if self.storage.stat(self._revision(name, digest)) is None:
            raise self._manifest_unknown(name, reference)
        return digest

    def _manifest_unknown(self, name: str, reference: str) -> Exception:
        if not self.repository_exists(name):
            return NameUnknown(f"repository {name} unknown", name=name)
        return ManifestUnknown(f"manifest {reference} unknown in {name}", reference=reference)

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names. Cost: one small file read + one JSON parse."""
        digest = self.resolve(name, reference)
        try:
            meta = json.loads(self.storage.read_bytes(self._revision(name, digest), 64 << 10) or b"{}")
            data = self.storage.read_bytes(blob_path(digest), self.config.manifest_max_bytes)
        except Exception:
            raise ManifestUnknown(f"manifest {reference} unknown in {name}", reference=reference) from None
        manifest = parse_manifest(data, meta.get("mediaType", ""))
        return StoredManifest(digest, meta.get("mediaType") or manifest.media_type, data, manifest)

    def put_manifest(
        self, name: str, reference: str, data: bytes, content_type: str = "", tags: Iterable[str] = ()
    ) -> PutManifestResult:
        """Validate and store a manifest under a tag or a digest reference, plus ``tags``.

        Every blob the manifest references (config, layers; children of an index) must already be in
        ``name``, else ManifestBlobUnknown. When ``reference`` is a digest the body must hash to it.
        ``tags`` (the spec's ``?tag=`` parameters) are all validated before anything is stored; at
        most ``config.max_tags_per_push`` (TooManyTags beyond). Tag moves publish
        REGISTRY_TAG_CHANGED; every push REGISTRY_MANIFEST_PUSHED.
        """
        validate_name(name)
        if len(data) > self.config.manifest_max_bytes:
            raise ManifestTooLarge(f"manifest larger than {self.config.manifest_max_bytes} bytes")
        wanted = list(dict.fromkeys(([] if is_digest(reference) else [reference]) + list(tags)))
        if len(wanted) > self.config.max_tags_per_push:
            raise TooManyTags(f"at most {self.config.max_tags_per_push} tags per manifest push")
        all_tags = tuple(validate_tag(t) for t in wanted)
        tag = all_tags[0] if all_tags else None
        if is_digest(reference):
            want = Digest.parse(reference)
            digest = Digest.of(data, want.algorithm)
            if digest != want:
                raise DigestInvalid(f"manifest body has digest {digest}, not {want}", digest=str(want))
        else:
            digest = Digest.of(data)
        manifest = parse_manifest(data, content_type)
        with self.gc_lock:
            self._check_references(name, manifest)
            self.storage.put_bytes(blob_path(digest), data)
            self._mark_reachable([digest, *(d.digest for d in manifest.references())])
            meta = {"mediaType": manifest.media_type}
            self.storage.put_bytes(self._revision(name, digest), json.dumps(meta).encode())
        if manifest.subject is not None:
            entry = Descriptor(
                manifest.media_type, digest, len(data), manifest.artifact_type, manifest.annotations
            )
            ref_path = f"{self._referrer_dir(name, manifest.subject.digest)}/{digest.algorithm}-{digest.hex}"
            self.storage.put_bytes(ref_path, json.dumps(entry.to_json()).encode())
        moved: list[tuple[str, str | None]] = []
        for each in all_tags:
            previous = self._read_tag(name, each)
            self.storage.put_bytes(self._tag_path(name, each), str(digest).encode())
            if previous != str(digest):
                moved.append((each, previous))
        log.info(
            "manifest pushed",
            repository=name,
            digest=str(digest),
            tags=list(all_tags),
            media_type=manifest.media_type,
        )
        self.emit(
            Subject.REGISTRY_MANIFEST_PUSHED,
            f"{name}@{digest}",
            repository=name,
            digest=str(digest),
            media_type=manifest.media_type,
            size=len(data),
            tag=tag or "",
            tags=list(all_tags),
        )
        for each, previous in moved:
            self.emit(
                Subject.REGISTRY_TAG_CHANGED,
                f"{name}:{each}",
                repository=name,
                tag=each,
                digest=str(digest),
                previous=previous or "",
            )
        subject = manifest.subject.digest if manifest.subject else None
        return PutManifestResult(digest, subject, tag, all_tags)

    def _check_references(self, name: str, manifest: Manifest) -> None:
        for desc in manifest.blobs:
            if not desc.must_exist:
                continue
            try:
                info = self.stat_blob(name, desc.digest)
            except BlobUnknown:
                raise ManifestBlobUnknown(
                    f"blob {desc.digest} unknown to {name}", digest=str(desc.digest)
                ) from None
            if info.size != desc.size:
                raise ManifestInvalid(
                    f"descriptor of {desc.digest} says {desc.size} bytes, the blob has {info.size}",
                    digest=str(desc.digest),
                )
        for child in manifest.children:
            if self.storage.stat(self._revision(name, child.digest)) is None:
                raise ManifestBlobUnknown(
                    f"manifest {child.digest} unknown to {name}", digest=str(child.digest)
                )

    def _read_tag(self, name: str, tag: str) -> str | None:
        try:
            return self.storage.read_bytes(self._tag_path(name, tag), 1024).decode().strip()
        except Exception:
            return None

    def delete_manifest(self, name: str, reference: str) -> None:
        """By digest: remove the manifest from ``name`` with every tag pointing at it; by tag: the tag."""
        if not is_digest(reference):
            self.delete_tag(name, reference)
            return
        stored = self.get_manifest(name, reference)
        digest = stored.digest
        removed_tags = [
            t
            for t in self.storage.list(f"{self._repo(name)}/_manifests/tags")
            if self._read_tag(name, t) == str(digest)
        ]
        for tag in removed_tags:
            self.storage.delete(self._tag_path(name, tag))
        if stored.manifest.subject is not None:
            ref_dir = self._referrer_dir(name, stored.manifest.subject.digest)
            self.storage.delete(f"{ref_dir}/{digest.algorithm}-{digest.hex}")
        self.storage.delete(self._revision(name, digest))
        log.info("manifest deleted", repository=name, digest=str(digest), tags=removed_tags)
        for tag in removed_tags:
            self.emit(
                Subject.REGISTRY_TAG_DELETED, f"{name}:{tag}", repository=name, tag=tag, digest=str(digest)
            )
        self.emit(Subject.REGISTRY_MANIFEST_DELETED, f"{name}@{digest}", repository=name, digest=str(digest))

    def delete_tag(self, name: str, tag: str) -> None:
        previous = self._read_tag(name, tag) if TAG_RE.fullmatch(tag) else None
        if previous is None:
            raise self._manifest_unknown(name, tag)
        self.storage.delete(self._tag_path(name, tag))
        log.info("tag deleted", repository=name, tag=tag, digest=previous)
        self.emit(Subject.REGISTRY_TAG_DELETED, f"{name}:{tag}", repository=name, tag=tag, digest=previous)

    # ----------------------------------------------------------------- listings

    def list_tags(self, name: str, n: int | None = None, last: str = "") -> list[str]:
        """Tags of ``name`` in lexical order, after ``last``, at most ``n``; NameUnknown if no such repo."""
        if not self.repository_exists(name):
            raise NameUnknown(f"repository {name} unknown", name=name)
        return _paginate(self.storage.list(f"{self._repo(name)}/_manifests/tags"), n, last)

    def list_repositories(self, n: int | None = None, last: str = "") -> list[str]:
        """Repository names in lexical order (catalog). Cost: a walk of the repositories tree."""
        return _paginate(self._walk_repositories("repositories", ""), n, last)

    def _walk_repositories(self, path: str, prefix: str) -> Iterator[str]:
        children = self.storage.list(path)
        if prefix and ("_layers" in children or "_manifests" in children):
            yield prefix
        for child in children:
            if not child.startswith("_"):
                yield from self._walk_repositories(
                    f"{path}/{child}", f"{prefix}/{child}" if prefix else child
                )

    def manifest_digests(self, name: str) -> list[Digest]:
        """Every manifest revision in ``name`` (tagged or not)."""
        out = []
        base = f"{self._repo(name)}/_manifests/revisions"
        for alg in self.storage.list(base):
            for hex_ in self.storage.list(f"{base}/{alg}"):
                try:
                    out.append(Digest.parse(f"{alg}:{hex_}"))
                except DigestInvalid:
                    continue
        return out

    def referrers(self, name: str, subject: Digest, artifact_type: str = "") -> list[dict[str, Any]]:
        """Descriptors of the manifests in ``name`` whose ``subject`` is ``subject``, optionally filtered."""
        ref_dir = self._referrer_dir(name, subject)
        out = []
        for entry in self.storage.list(ref_dir):
            try:
                desc = json.loads(self.storage.read_bytes(f"{ref_dir}/{entry}", 1 << 20))
            except Exception:
                continue
            if not artifact_type or desc.get("artifactType") == artifact_type:
                out.append(desc)
        return sorted(out, key=lambda d: d["digest"])

    def usage(self) -> Usage:
        """Blob count and bytes under blobs/ (shared blobs counted once). Cost: a walk of blobs/."""
        count = total = 0
        for info in self.storage.walk("blobs"):
            count += 1
            total += info.size
        return Usage(sum(1 for _ in self._walk_repositories("repositories", "")), count, total)

    def read_manifest_blob(self, digest: Digest) -> Manifest | None:
        """Parse the manifest stored as blob ``digest``; None if absent or not a manifest (used by GC)."""
        try:
            return parse_manifest(self.storage.read_bytes(blob_path(digest), self.config.manifest_max_bytes))
        except Exception:
            return None


__all__ = [
    "BlobInfo",
    "ChunkWriter",
    "PutManifestResult",
    "Registry",
    "StoredManifest",
    "UploadStatus",
    "Usage",
    "validate_name",
    "validate_tag",
]
