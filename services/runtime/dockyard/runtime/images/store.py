"""The node's image store: images as records over shared content and shared unpacked layers.

On disk::

    <root>/                               mode 0700: layers keep setuid files and foreign ids;
                                          no other host user may reach them
      content/                            ContentStore: manifests, configs, layer blobs
        blobs/sha256/<hex>
        ingest/<random>
      layers/
        <chain-id-hex>/                   one unpacked layer, keyed by its OCI ChainID: stored once,
          fs/                             shared by every image whose stack has it; read-only
          diff_id                         lower of every container of those images
          size                            "sha256:<hex>" of the uncompressed tar; unpacked bytes
        .tmp-<chain-hex>-<random>/        a layer being unpacked (renamed into place when done)
        .trash-<chain-hex>-<random>/      a layer being removed (renamed out first, then rmtree)
      images/<config-hex>.json            one ImageRecord per image (id = config digest)
      refs.json                           {"tags": {"name:tag": id}, "digests": {"name@sha256:…": id}}
      tmp/                                spool space for imports and loads

Every small file is written whole: tmp + fsync + rename (+ fsync of the directory). Tags live in
one file so moving a tag between images is one atomic write. Nothing counts references: what is
in use is computed from the records (a node holds few images), and removal deletes only layers
and blobs that the removed records named and no remaining record names — never something a
concurrent pull has stored but not yet recorded. A layer unpacked for an ``add_image`` in
progress is pinned until it is recorded.

Threading: every method is synchronous and meant to be called off the event loop; mutations of
records and refs hold one lock; the slow parts (ingesting, unpacking) run outside it.

Events: IMPORTED, COMMITTED, TAGGED, UNTAGGED, REMOVED are emitted here, after the change is
durable. ``add_image`` emits nothing: its caller (pull, load) emits PULLED/LOADED.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import json
import os
import platform
import shutil
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog

from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from dockyard.core.events import Publisher, Subject, new_event
from dockyard.core.fsutil import fsync_dir
from dockyard.core.oci import reference as refs
from dockyard.core.oci.digest import check_sha256, sha256_digest
from dockyard.core.oci.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    TO_OCI_LAYER,
)
from dockyard.runtime.images.changes import apply_changes
from dockyard.runtime.images.content import CHUNK_SIZE, ContentStore
from dockyard.runtime.images.unpack import unpack_layer

log = structlog.get_logger("dockyard.runtime.images")

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MISSING = "<missing>"
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}
_GOARCH.update({"i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"})


HEALTHCHECK_ANNOTATION = "dev.dockyard.image.healthcheck"  # a built image's HEALTHCHECK, as JSON


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image of the store. ``id`` is the config digest; names are canonical reference strings."""

    id: str
    manifest_digest: str
    manifest_media_type: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created: str
    diff_ids: tuple[str, ...]
    layer_digests: tuple[str, ...]
    size: int
    layer_media_types: tuple[str, ...] = ()

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(list(self.diff_ids))

    @property
    def short_id(self) -> str:
        return self.id[7:19]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One line of ``docker history``: ``id`` is the image's for the top row, else ``<missing>``."""

    id: str
    created: str
    created_by: str
    size: int
    comment: str
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class DiskUsageRow:
    """One image of ``docker system df -v``: bytes shared with other images, bytes only it holds."""

    image: ImageRecord
    shared_size: int
    unique_size: int
    containers: int


def _canonical(name: str) -> str:
    """A name as the store keys it today: one written before names were docker's familiar ones
    (``docker.io/team/app:1``) is found again as ``team/app:1``."""
    try:
        return refs.normalize(name)
    except InvalidArgument:
        return name


@dataclass
class _Refs:
    tags: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)


Users = Callable[[str], list[str]]


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI ChainIDs: ``C0 = D0``, ``Cn = sha256(C(n-1) + " " + Dn)``."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out


def goarch(machine: str | None = None) -> str:
    """The GOARCH name of this machine (``x86_64`` → ``amd64``), as image configs spell it."""
    m = (machine or platform.machine()).lower()
    return _GOARCH.get(m, m)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _layer_media_type(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return OCI_LAYER_GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return OCI_LAYER_ZSTD
    return OCI_LAYER


def _uncompressed_digest(fh: IO[bytes], media_type: str) -> str:
    """The diff id of a layer blob: sha256 of its uncompressed tar (one streaming pass)."""
    hasher = hashlib.sha256()
    stream: IO[bytes] = fh
    if media_type == OCI_LAYER_GZIP:
        stream = gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[assignment]
    elif media_type == OCI_LAYER_ZSTD:
        try:
            import zstandard
        except ImportError:
            raise InvalidArgument("layer is zstd-compressed and this node cannot read zstd") from None
        stream = zstandard.ZstdDecompressor().stream_reader(fh)
    try:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidArgument(f"layer is not valid {media_type}: {exc}") from exc
    return "sha256:" + hasher.hexdigest()


class ImageStore:
    """Images on one node (see the module docstring for the tree and the contracts)."""

    def __init__(self, root: Path, publisher: Publisher, source: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.content = ContentStore(self.root / "content")
        self._layers = self.root / "layers"
        self._images = self.root / "images"
        self.tmp = self.root / "tmp"
        for d in (self._layers, self._images, self.tmp):
            d.mkdir(exist_ok=True)
        self._refs_path = self.root / "refs.json"
        self.publisher = publisher
        self.source = source
        self._lock = threading.Lock()
        self._pinned: dict[str, int] = {}  # chain hex → adds in progress that need it
        self._sweep()
        self._records: dict[str, dict[str, Any]] = self._load_records()
        self._refs = self._load_refs()
        self._sweep_orphans()

    # -- start-up ----------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Remove what a crash left half-done: unpacks, removals, spooled files."""
        for entry in self._layers.iterdir():
            if entry.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def _sweep_orphans(self) -> None:
        """Remove blobs no image record holds: what a pull, load or commit that failed (or was
        killed) had stored before its record was written. Only at start-up, when no such work can
        be in flight; otherwise ``system df`` never counts them and no prune ever frees them."""
        held = {b for doc in self._records.values() for b in self._blobs_of(doc)}
        freed = count = 0
        for digest in self.content.digests():
            if digest not in held:
                with contextlib.suppress(NotFound):
                    freed += self.content.size(digest)
                self.content.delete(digest)
                count += 1
        if count:
            log.info("removed blobs no image holds (a failed pull or commit)", blobs=count, bytes=freed)

    def discard_unheld(self, digests: Iterable[str]) -> int:
        """Delete those of ``digests`` no image record holds: what a failed pull had stored, so
        it is neither left uncounted by ``system df`` nor kept from every prune. Returns bytes freed."""
        freed = 0
        with self._lock:
            held = {b for doc in self._records.values() for b in self._blobs_of(doc)}
            for digest in set(digests) - held:
                with contextlib.suppress(NotFound):
                    freed += self.content.size(digest)
                self.content.delete(digest)
        return freed

    def _load_records(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for path in self._images.glob("*.json"):
            try:
                doc = json.loads(path.read_bytes())
                records[doc["id"]] = doc
            except (OSError, ValueError, KeyError) as exc:
                log.warning("image_record_unreadable", path=str(path), error=str(exc))
        return records

    def _load_refs(self) -> _Refs:
        try:
            doc = json.loads(self._refs_path.read_bytes())
        except FileNotFoundError:
            return _Refs()
        known = self._records
        return _Refs(
            tags={_canonical(k): v for k, v in doc.get("tags", {}).items() if v in known},
            digests={_canonical(k): v for k, v in doc.get("digests", {}).items() if v in known},
        )

    def _save_refs(self) -> None:
        doc = {"tags": self._refs.tags, "digests": self._refs.digests}
        _write_atomic(self._refs_path, json.dumps(doc, indent=1, sort_keys=True).encode())

    def _record(self, image_id: str) -> ImageRecord:
        doc = self._records[image_id]
        return ImageRecord(
            id=doc["id"],
            manifest_digest=doc["manifest_digest"],
            manifest_media_type=doc["manifest_media_type"],
            repo_tags=tuple(sorted(t for t, i in self._refs.tags.items() if i == image_id)),
            repo_digests=tuple(sorted(d for d, i in self._refs.digests.items() if i == image_id)),
            created=doc["created"],
            diff_ids=tuple(doc["diff_ids"]),
            layer_digests=tuple(doc["layer_digests"]),
            size=doc["size"],
            layer_media_types=tuple(doc.get("layer_media_types", ())),
        )

    def _emit(self, subject: Subject, entity: str, **data: Any) -> None:
        self.publisher.publish(new_event(subject, self.source, entity, data))

    def announce(self, subject: Subject, record: ImageRecord) -> None:
        """Emit an event about ``record`` (for callers of ``add_image``: PULLED, LOADED)."""
        name = record.repo_tags[0] if record.repo_tags else record.id
        self._emit(subject, record.id, name=name, tags=list(record.repo_tags))

    # -- adding ------------------------------------------------------------------------------

    def add_image(
        self, manifest: bytes, reference: str | None, repo_digest: str | None = None
    ) -> ImageRecord:
        """Record the image ``manifest`` describes; its config and layer blobs must be in content.

        Unpacks the layers not yet unpacked (bottom first, each checked against its diff id),
        then records the image and tags it with ``reference``; ``repo_digest``
        (``name@sha256:…``) is recorded as a repo digest. Idempotent. Emits nothing.
        """
        ref = self._tag_ref(reference) if reference else None
        digest_ref = refs.parse(repo_digest) if repo_digest else None
        if digest_ref is not None and digest_ref.digest is None:
            raise InvalidArgument(f"repo digest {repo_digest!r} has no digest")
        try:
            doc = json.loads(manifest)
        except ValueError as exc:
            raise InvalidArgument(f"manifest is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("manifest is not a JSON object")
        media_type = doc.get("mediaType") or OCI_MANIFEST
        if media_type in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
            raise InvalidArgument("an image index / manifest list: choose one platform's manifest first")
        if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) or doc.get("schemaVersion") != 2:
            raise InvalidArgument(f"unsupported manifest type {media_type!r} (want OCI or Docker schema 2)")
        try:
            config_digest = doc["config"]["digest"]
            layers = [(d["digest"], d.get("mediaType", OCI_LAYER)) for d in doc["layers"]]
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"malformed manifest: missing {exc}") from None
        check_sha256(config_digest)
        for digest, _ in layers:
            check_sha256(digest)
        try:
            config = json.loads(self.content.read_bytes(config_digest))
            diff_ids = list(config["rootfs"]["diff_ids"])
        except NotFound:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"malformed image config {config_digest}: {exc}") from None
        _check_text(doc, f"manifest of {reference or config_digest}")
        _check_text(config, f"image config {config_digest}")
        if len(diff_ids) != len(layers):
            raise InvalidArgument(
                f"image config names {len(diff_ids)} layers, the manifest {len(layers)}", config=config_digest
            )
        for diff_id in diff_ids:
            check_sha256(diff_id)
        for digest, _ in layers:
            if not self.content.has(digest):
                raise NotFound(f"layer blob {digest} is not in the store", digest=digest)
        manifest_digest = self.content.write_bytes(manifest)
        chains = chain_ids(diff_ids)
        with self._pin(chains):
            blobs = [blob for blob, _ in layers]
            workers = min(len(blobs), os.cpu_count() or 1, 4)
            if workers > 1:  # layers unpack independently (a dir each): use every core
                with ThreadPoolExecutor(workers, thread_name_prefix="unpack") as pool:
                    sizes = list(pool.map(self._ensure_layer, chains, diff_ids, blobs))
            else:
                sizes = [self._ensure_layer(*args) for args in zip(chains, diff_ids, blobs, strict=True)]
            with self._lock:
                if config_digest not in self._records:
                    record = {
                        "id": config_digest,
                        "manifest_digest": manifest_digest,
                        "manifest_media_type": media_type,
                        "created": str(config.get("created") or ""),
                        "diff_ids": diff_ids,
                        "layer_digests": [blob for blob, _ in layers],
                        "layer_media_types": [mt for _, mt in layers],
                        "size": sum(sizes),
                    }
                    _write_atomic(
                        self._images / f"{config_digest[7:]}.json", json.dumps(record, indent=1).encode()
                    )
                    self._records[config_digest] = record
                changed = False
                if ref is not None:
                    changed |= self._refs.tags.get(str(ref)) != config_digest
                    self._refs.tags[str(ref)] = config_digest
                if digest_ref is not None:
                    changed |= self._refs.digests.get(str(digest_ref)) != config_digest
                    self._refs.digests[str(digest_ref)] = config_digest
                if changed:
                    self._save_refs()
                return self._record(config_digest)

    @contextlib.contextmanager
    def _pin(self, chains: list[str]) -> Iterator[None]:
        with self._lock:
            for c in chains:
                self._pinned[c[7:]] = self._pinned.get(c[7:], 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for c in chains:
                    self._pinned[c[7:]] -= 1
                    if not self._pinned[c[7:]]:
                        del self._pinned[c[7:]]

    def _ensure_layer(self, chain: str, diff_id: str, blob: str) -> int:
        """Unpack layer ``blob`` as ``layers/<chain>`` unless it is there; returns its size."""
        final = self._layers / chain[7:]
        if final.is_dir():
            return self._layer_size(chain)
        work = self._layers / f".tmp-{chain[7:]}-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            with self.content.open(blob) as fh:
                size = unpack_layer(fh, work / "fs", diff_id=diff_id)
            (work / "diff_id").write_text(diff_id)
            (work / "size").write_text(str(size))
            try:
                os.rename(work, final)
            except OSError:
                if not final.is_dir():  # not a concurrent unpack of the same layer: a real error
                    raise
            else:
                fsync_dir(self._layers)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("layer_unpacked", chain_id=chain, diff_id=diff_id, size=size)
        return size

    def _layer_size(self, chain: str) -> int:
        try:
            return int((self._layers / chain[7:] / "size").read_text())
        except (OSError, ValueError):
            return 0

    def import_rootfs(
        self, chunks: Iterable[bytes], reference: str | None, changes: list[str], message: str
    ) -> ImageRecord:
        """A rootfs tarball (plain, gzip, or zstd when readable) as a one-layer image. Emits IMPORTED.

        The blob is stored as given; its diff id costs one more streaming pass when compressed.
        """
        ref = self._tag_ref(reference) if reference else None
        section: dict[str, Any] = {}
        config: dict[str, Any] = apply_changes({"config": section}, changes)
        env = config["config"].get("Env") or []
        if not any(e.partition("=")[0] == "PATH" for e in env):
            config["config"]["Env"] = [DEFAULT_PATH, *env]
        blob, size = self.content.ingest(chunks)
        with self.content.open(blob) as fh:
            media_type = _layer_media_type(fh.read(4))
            fh.seek(0)
            diff_id = blob if media_type == OCI_LAYER else _uncompressed_digest(fh, media_type)
        created = _now()
        history: dict[str, Any] = {"created": created, "created_by": "Imported from -"}
        if message:
            history["comment"] = message
        doc = {
            "created": created,
            "architecture": goarch(),
            "os": "linux",
            "config": config["config"],
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [history],
        }
        record = self._add_built(doc, [(blob, media_type, size)], ref)
        self._emit(Subject.IMAGE_IMPORTED, record.id, name=str(ref) if ref else record.id)
        return record

    def commit_layer(
        self,
        parent: ImageRecord | None,
        layer_tar: Path,
        changes: list[str],
        message: str,
        author: str,
        created_by: str,
        config_overrides: dict[str, Any] | None,
        reference: str | None,
    ) -> ImageRecord:
        """A new image: ``parent`` (None: scratch) plus the uncompressed layer tar ``layer_tar``.

        The tar is stored as a blob (its digest is the diff id) and unpacked; the config is the
        parent's with ``config_overrides`` merged into its ``config`` section, ``changes``
        applied, the layer and a history entry appended. Emits COMMITTED.
        """
        ref = self._tag_ref(reference) if reference else None
        blob, size = self.content.ingest_file(layer_tar)
        if parent is not None:
            base = self.config(parent)
            layers = [
                (digest, TO_OCI_LAYER.get(mt, mt), self.content.size(digest))
                for digest, mt in zip(parent.layer_digests, self._media_types(parent), strict=True)
            ]
        else:
            base = {"architecture": goarch(), "os": "linux", "config": {}, "rootfs": {"type": "layers"}}
            layers = []
        base = copy.deepcopy(base)
        for stale in ("container", "container_config", "id", "parent", "docker_version"):
            base.pop(stale, None)
        section = base.get("config") if isinstance(base.get("config"), dict) else {}
        base["config"] = {**(section or {}), **(config_overrides or {})}
        doc = apply_changes(base, changes)
        created = _now()
        doc["created"] = created
        if author:
            doc["author"] = author
        doc["rootfs"] = {"type": "layers", "diff_ids": [*doc.get("rootfs", {}).get("diff_ids", []), blob]}
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if author:
            entry["author"] = author
        if message:
            entry["comment"] = message
        doc["history"] = [*doc.get("history", []), entry]
        record = self._add_built(doc, [*layers, (blob, OCI_LAYER, size)], ref)
        self._emit(Subject.IMAGE_COMMITTED, record.id, name=str(ref) if ref else record.id, comment=message)
        return record

    # --- builds (the builder's steps: dockyard.runtime.buildsteps) ---

    def add_step(
        self,
        parent: ImageRecord | None,
        layer_tar: Path | None,
        *,
        config: dict[str, Any] | None,
        created_by: str,
        created: str | None = None,
        comment: str = "",
        reference: str | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> ImageRecord:
        """One build step on ``parent`` (None: scratch): a layer, or none (an ``empty_layer`` entry).

        ``config`` replaces the config section whole (None keeps the parent's); ``created`` (RFC
        3339, default now) is the history entry's time and the image's; ``history``: entries
        (without layers) to put between the parent's and the step's (a squash keeps them). Nothing
        else of the parent changes, so the same step on the same parent with the same layer is
        the same image id. Emits nothing (the builder reports its build).
        """
        ref = self._tag_ref(reference) if reference else None
        if parent is not None:
            doc = copy.deepcopy(self.config(parent))
            layers = [
                (digest, TO_OCI_LAYER.get(mt, mt), self.content.size(digest))
                for digest, mt in zip(parent.layer_digests, self._media_types(parent), strict=True)
            ]
        else:
            doc = {"architecture": goarch(), "os": "linux", "config": {}, "rootfs": {"type": "layers"}}
            layers = []
        for stale in ("container", "container_config", "id", "parent", "docker_version"):
            doc.pop(stale, None)
        if config is not None:
            doc["config"] = config
        when = created or _now()
        doc["created"] = when
        entry: dict[str, Any] = {"created": when, "created_by": created_by}
        if comment:
            entry["comment"] = comment
        diff_ids = list(doc.get("rootfs", {}).get("diff_ids", []))
        if layer_tar is not None:
            blob, size = self.content.ingest_file(layer_tar)
            diff_ids.append(blob)
            layers.append((blob, OCI_LAYER, size))
        else:
            entry["empty_layer"] = True
        doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        doc["history"] = [*doc.get("history", []), *(history or ()), entry]
        return self._add_built(doc, layers, ref)

    # --- end builds ---

    def _media_types(self, record: ImageRecord) -> list[str]:
        if record.layer_media_types:
            return list(record.layer_media_types)
        doc = json.loads(self.manifest_bytes(record))
        return [d.get("mediaType", OCI_LAYER) for d in doc["layers"]]

    def _add_built(
        self, config: dict[str, Any], layers: list[tuple[str, str, int]], ref: refs.Reference | None
    ) -> ImageRecord:
        """Store ``config`` and an OCI manifest over ``layers`` (digest, media type, size); record."""
        raw_config = json.dumps(config, separators=(",", ":")).encode()
        config_digest = self.content.write_bytes(raw_config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(raw_config)},
            "layers": [{"mediaType": mt, "digest": d, "size": s} for d, mt, s in layers],
        }
        check = config.get("config", {}).get("Healthcheck")
        if check:  # Docker's field, outside the OCI config spec: an annotation keeps it for OCI tools
            manifest["annotations"] = {HEALTHCHECK_ANNOTATION: json.dumps(check, sort_keys=True)}
        raw_manifest = json.dumps(manifest, separators=(",", ":")).encode()
        self.content.write_bytes(raw_manifest)
        return self.add_image(raw_manifest, str(ref) if ref else None)

    # -- reading -----------------------------------------------------------------------------

    def resolve(self, ref: str) -> ImageRecord:
        """By ``name[:tag]``, ``name@digest``, ``sha256:<id>`` or an id prefix of ≥ 4 hex digits."""
        with self._lock:
            return self._record(self._resolve(ref)[0])

    def _resolve(self, ref: str) -> tuple[str, str | None]:
        """``(image id, the tag or digest name it was found by, or None when found by id)``."""
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("empty image reference")
        if ref in self._records:
            return ref, None
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        parsed: refs.Reference | None = None
        if not ref.startswith("sha256:"):
            with contextlib.suppress(InvalidArgument):
                parsed = refs.parse(ref)
        if parsed is not None:
            if parsed.digest is not None:
                key = f"{parsed.name}@{parsed.digest}"
                if key in self._refs.digests:
                    return self._refs.digests[key], key
                for image_id, doc in self._records.items():
                    if doc["manifest_digest"] == parsed.digest:
                        return image_id, None
            elif str(parsed) in self._refs.tags:
                return self._refs.tags[str(parsed)], str(parsed)
        if 4 <= len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart):
            matches = [i for i in self._records if i[7:].startswith(hexpart)]
            if len(matches) > 1:
                raise InvalidArgument(f"image id prefix {ref!r} is ambiguous: {len(matches)} images match")
            if matches:
                return matches[0], None
        elif parsed is None and not ref.startswith("sha256:"):
            refs.parse(ref)  # raises the reason it is not a reference
        raise NotFound(f"no such image: {ref}", reason=Reason.NO_SUCH_IMAGE, reference=ref)

    def config(self, record: ImageRecord) -> dict[str, Any]:
        """The image's OCI config document."""
        doc: dict[str, Any] = json.loads(self.content.read_bytes(record.id))
        return doc

    def config_bytes(self, record: ImageRecord) -> bytes:
        return self.content.read_bytes(record.id)

    def manifest_bytes(self, record: ImageRecord) -> bytes:
        return self.content.read_bytes(record.manifest_digest)

    def layer_dirs(self, record: ImageRecord) -> list[Path]:
        """The unpacked ``fs/`` directories of the image, bottom first (overlay lowers reversed)."""
        dirs = [self._layers / c[7:] / "fs" for c in record.chain_ids]
        for d in dirs:
            if not d.is_dir():
                raise NotFound(f"layer {d.parent.name[:12]} of image {record.short_id} is missing")
        return dirs

    def layer_dir_by_chain(self, chain_id: str) -> Path | None:
        """The ``fs/`` of an unpacked layer with OCI ChainID ``chain_id``, if stored."""
        d = self._layers / check_sha256(chain_id) / "fs"
        return d if d.is_dir() else None

    # -- names -------------------------------------------------------------------------------

    @staticmethod
    def _tag_ref(raw: str) -> refs.Reference:
        ref = refs.parse(raw)
        if ref.digest is not None:
            raise InvalidArgument(f"cannot tag with a digest reference: {raw!r}")
        return ref

    def tag(self, src: str, target: str) -> None:
        """Point tag ``target`` at the image ``src`` names; the tag's old image keeps its other names."""
        ref = self._tag_ref(target)
        with self._lock:
            image_id = self._resolve(src)[0]
            if self._refs.tags.get(str(ref)) == image_id:
                return
            self._refs.tags[str(ref)] = image_id
            self._save_refs()
        self._emit(Subject.IMAGE_TAGGED, image_id, name=str(ref))

    def remove(self, ref: str, force: bool, users: Users) -> tuple[list[str], list[str]]:
        """``docker rmi``: returns ``(untagged names, deleted ids)``.

        By name, when the image has other tags (or it is a digest name and other names remain),
        only that name goes. By id, or by its last tag, the image is deleted with every name
        and with the layers and blobs no other image uses. By id, an image with several tags
        needs ``force``. An image used by containers (``users(id)`` names them; called without
        the store's lock held) is refused with FailedPrecondition; with ``force`` its names go
        and the image stays.
        """
        with self._lock:
            image_id = self._resolve(ref)[0]
        in_use = users(image_id)
        freed: list[str] = []
        with self._lock:
            image_id, name = self._resolve(ref)
            tags = [t for t, i in self._refs.tags.items() if i == image_id]
            digests = [d for d, i in self._refs.digests.items() if i == image_id]
            others = (
                [n for n in tags if n != name] if name in tags else [n for n in tags + digests if n != name]
            )
            if name is not None and others:
                self._untag([name])
                untagged, deleted = [name], []
            else:
                if name is None and len(tags) > 1 and not force:
                    raise FailedPrecondition(
                        f"image {image_id[7:19]} is referenced by several tags ({', '.join(sorted(tags))}): "
                        "remove them by name, or force",
                        image=image_id,
                    )
                if in_use and not force:
                    raise FailedPrecondition(
                        f"image is in use by container(s) {', '.join(in_use)}", image=image_id
                    )
                untagged = sorted(tags) + sorted(digests)
                self._untag(untagged)
                deleted = [] if in_use else [image_id]
                freed, _ = self._delete_records(deleted)
        for n in untagged:
            self._emit(Subject.IMAGE_UNTAGGED, image_id, name=n)
        for i in deleted:
            self._emit(Subject.IMAGE_REMOVED, i, name=ref)
        self._free(freed)
        return untagged, deleted

    def _untag(self, names: list[str]) -> None:
        for n in names:
            self._refs.tags.pop(n, None)
            self._refs.digests.pop(n, None)
        if names:
            self._save_refs()

    def _delete_records(self, ids: list[str]) -> tuple[list[str], int]:
        """Drop records and the blobs only they used (under the lock); returns the layer dirs to
        free and the bytes of the blobs deleted.

        Unused layers are renamed to ``.trash-…`` here, so no new image can pick one up; the
        caller removes them (``_free``) after releasing the lock.
        """
        if not ids:
            return [], 0
        gone = [self._records.pop(i) for i in ids]
        for doc in gone:
            (self._images / f"{doc['id'][7:]}.json").unlink(missing_ok=True)
        self._refs.tags = {k: v for k, v in self._refs.tags.items() if v not in ids}
        self._refs.digests = {k: v for k, v in self._refs.digests.items() if v not in ids}
        self._save_refs()
        fsync_dir(self._images)
        used_chains = {c[7:] for doc in self._records.values() for c in chain_ids(doc["diff_ids"])}
        used_chains |= set(self._pinned)
        used_blobs = {b for doc in self._records.values() for b in self._blobs_of(doc)}
        layers = {c[7:] for doc in gone for c in chain_ids(doc["diff_ids"])} - used_chains
        blobs = {b for doc in gone for b in self._blobs_of(doc)} - used_blobs
        trashed = []
        for chain in sorted(layers):  # renamed out under the lock: no new image can pick them up
            trash = self._layers / f".trash-{chain}-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(self._layers / chain, trash)
                trashed.append(trash.name)
        blob_bytes = 0
        for blob in blobs:
            with contextlib.suppress(NotFound):
                blob_bytes += self.content.size(blob)
            self.content.delete(blob)
        return trashed, blob_bytes

    @staticmethod
    def _blobs_of(doc: dict[str, Any]) -> list[str]:
        return [doc["id"], doc["manifest_digest"], *doc["layer_digests"]]

    def _free(self, trashed: list[str]) -> int:
        """Remove the trashed layer dirs; the bytes of the files they held."""
        freed = 0
        for name in trashed:
            for top, _, files in os.walk(self._layers / name):
                for f in files:
                    with contextlib.suppress(OSError):
                        freed += os.lstat(os.path.join(top, f)).st_size
            shutil.rmtree(self._layers / name, ignore_errors=True)
        return freed

    def prune(self, all: bool, users: Users) -> tuple[list[str], int]:
        """Delete dangling (untagged) images, or with ``all`` every image no container uses.

        Returns the deleted ids and the bytes freed: the blobs deleted and the files of the
        unpacked layers removed (docker's "Total reclaimed space").
        """
        with self._lock:
            tagged = set(self._refs.tags.values())
            candidates = [i for i in self._records if all or i not in tagged]
        busy = {i for i in candidates if users(i)}
        with self._lock:
            tagged = set(self._refs.tags.values())
            doomed = [
                i for i in candidates if i in self._records and i not in busy and (all or i not in tagged)
            ]
            trashed, blob_bytes = self._delete_records(doomed)
        for i in doomed:
            self._emit(Subject.IMAGE_REMOVED, i, name=i, pruned=True)
        return sorted(doomed), blob_bytes + self._free(trashed)

    # -- reports -----------------------------------------------------------------------------

    def history(self, ref: str) -> list[HistoryRow]:
        """``docker history``: newest step first, layer sizes on the steps that made a layer."""
        record = self.resolve(ref)
        config = self.config(record)
        sizes = [self._layer_size(c) for c in record.chain_ids]
        entries = config.get("history") or [{"created": record.created} for _ in record.diff_ids]
        rows: list[HistoryRow] = []
        layer = 0
        for entry in entries:
            empty = bool(entry.get("empty_layer"))
            size = 0
            if not empty:
                size = sizes[layer] if layer < len(sizes) else 0
                layer += 1
            rows.append(
                HistoryRow(
                    id=MISSING,
                    created=str(entry.get("created") or ""),
                    created_by=str(entry.get("created_by") or ""),
                    size=size,
                    comment=str(entry.get("comment") or ""),
                    empty_layer=empty,
                )
            )
        rows.reverse()
        if rows:
            top = rows[0]
            rows[0] = HistoryRow(
                record.id, top.created, top.created_by, top.size, top.comment, top.empty_layer
            )
        return rows

    def disk_usage(self, users: Users) -> list[DiskUsageRow]:
        """``docker system df -v``: per image, bytes of layers shared with another image, and unique."""
        records = self.list()
        holders: dict[str, int] = {}
        for r in records:
            for c in set(r.chain_ids):
                holders[c] = holders.get(c, 0) + 1
        rows = []
        for r in records:
            shared = unique = 0
            for c in set(r.chain_ids):
                if holders[c] > 1:
                    shared += self._layer_size(c)
                else:
                    unique += self._layer_size(c)
            rows.append(DiskUsageRow(r, shared, unique, len(users(r.id))))
        return rows

    def total_size(self) -> int:
        """Bytes of every unpacked layer, each counted once however many images share it."""
        return sum(self._layer_size(c) for c in {c for r in self.list() for c in r.chain_ids})

    def dump(self, record: ImageRecord) -> dict[str, Any]:
        """The record as a plain dict (for inspect output and tests)."""
        return asdict(record)

    # defined last: inside the class body, ``list`` after this names the method, not the type
    def list(self) -> list[ImageRecord]:
        """Every image, newest (by config ``created``) first."""
        with self._lock:
            records = [self._record(i) for i in self._records]
        return sorted(records, key=lambda r: (r.created, r.id), reverse=True)


def _check_text(doc: Any, what: str) -> None:
    """Refuse a JSON document whose strings are not Unicode text: JSON's ``"\\ud800"`` escape parses
    to a lone surrogate, which no UTF-8 encoder (protobuf's strings, our records, a log) takes —
    recorded, such an image would break every listing of the store."""
    try:
        json.dumps(doc, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        code = ord(exc.object[exc.start])
        raise InvalidArgument(
            f"{what} is not valid Unicode: it holds the lone escape \\u{code:04x}"
        ) from None
