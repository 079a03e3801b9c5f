"""``save`` and ``load``: images to and from one tar, as an OCI image layout or a docker-archive.

``save(store, refs, "oci")`` streams an OCI image layout (what ``skopeo copy oci-archive:`` and
``podman save --format oci-archive`` read)::

    oci-layout                        {"imageLayoutVersion": "1.0.0"}
    blobs/sha256/<hex>                manifests, configs, layers exactly as stored (digests kept)
    index.json                        one manifest descriptor per saved name, annotated with
                                      org.opencontainers.image.ref.name and io.containerd.image.name
                                      = the full name ("busybox:latest"); no name when saved by id

``save(store, refs, "docker-archive")`` streams what ``docker save`` writes (the layout of
Docker ≥ 25, which ``docker load``, ``podman load`` and ``skopeo docker-archive:`` read)::

    blobs/sha256/<hex>                the configs, and each layer as an *uncompressed* tar named by
                                      its diff id (a gzip layer is decompressed on the way: one
                                      pass to learn its size, one to send it)
    manifest.json                     [{"Config": "blobs/sha256/<hex>", "RepoTags": [...],
                                        "Layers": ["blobs/sha256/<diff-id-hex>", ...]}]

The tar is produced member by member (header, then the file in 1 MiB chunks), so memory stays
bounded whatever the image size; the image ids (config digests) survive a round trip.

``load(store, chunks)`` reads either form — and the older docker-archive whose members are
``<id>/layer.tar`` and ``<id>.json``, with symlinks between shared layers — in one streaming
pass: ``blobs/sha256/<hex>`` members go straight into the content store (verified against their
name), other files are spooled under ``<store>/tmp/load-<random>/`` (deleted afterwards), since
a tar's member order is not guaranteed. Emits LOADED per image.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import re
import shutil
import tarfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.events import Subject
from dockyard.core.oci import reference as refs
from dockyard.core.oci.digest import check_sha256
from dockyard.core.oci.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
)
from dockyard.core.streams import ChunkReader
from dockyard.runtime.images.content import CHUNK_SIZE
from dockyard.runtime.images.store import (
    ImageRecord,
    ImageStore,
    goarch,
)

Format = Literal["oci", "docker-archive"]
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_METADATA = 8 << 20  # index.json, manifest.json, …: refuse larger ones rather than hold them
_BLOB = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_BLOCK = tarfile.BLOCKSIZE


# -- save ---------------------------------------------------------------------------------------


def save(store: ImageStore, references: list[str], fmt: str = "oci") -> Iterator[bytes]:
    """Stream ``references`` as one tar (``fmt``: ``oci`` or ``docker-archive``).

    References are resolved before the first byte is produced (NotFound/InvalidArgument then);
    a name that is a tag is written as the image's name, an id writes the image unnamed.
    """
    if fmt not in ("oci", "docker-archive"):
        raise InvalidArgument(f"unknown save format {fmt!r}: use oci or docker-archive")
    if not references:
        raise InvalidArgument("nothing to save: name at least one image")
    chosen: list[tuple[ImageRecord, str | None]] = []
    for ref in references:
        record = store.resolve(ref)
        name = _tag_name(ref, record)
        chosen.append((record, name))
    return _save_oci(store, chosen) if fmt == "oci" else _save_docker(store, chosen)


def _tag_name(ref: str, record: ImageRecord) -> str | None:
    try:
        parsed = refs.parse(ref)
    except InvalidArgument:
        return None
    return str(parsed) if parsed.digest is None and str(parsed) in record.repo_tags else None


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    return info.tobuf(tarfile.PAX_FORMAT)


def _member(name: str, data: bytes) -> bytes:
    return _header(name, len(data)) + data + b"\0" * (-len(data) % _BLOCK)


def _stream_member(name: str, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield _header(name, size)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        yield chunk
    if sent != size:
        raise InvalidArgument(f"{name} changed while being saved ({sent} bytes, expected {size})")
    yield b"\0" * (-size % _BLOCK)


def _end() -> bytes:
    return b"\0" * (2 * _BLOCK)


def _save_oci(store: ImageStore, chosen: list[tuple[ImageRecord, str | None]]) -> Iterator[bytes]:
    yield _member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    sent: set[str] = set()
    descriptors = []
    for record, name in chosen:
        for digest in [*record.layer_digests, record.id, record.manifest_digest]:
            if digest not in sent:
                sent.add(digest)
                yield from _stream_member(
                    f"blobs/sha256/{digest[7:]}", store.content.size(digest), store.content.chunks(digest)
                )
        descriptor: dict[str, Any] = {
            "mediaType": record.manifest_media_type,
            "digest": record.manifest_digest,
            "size": store.content.size(record.manifest_digest),
        }
        if name:
            descriptor["annotations"] = {REF_NAME: name, CONTAINERD_NAME: name}
        descriptors.append(descriptor)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    yield _member("index.json", json.dumps(index, indent=1).encode())
    yield _end()


def _save_docker(store: ImageStore, chosen: list[tuple[ImageRecord, str | None]]) -> Iterator[bytes]:
    sent: set[str] = set()
    entries: dict[str, dict[str, Any]] = {}
    for record, name in chosen:
        entry = entries.get(record.id)
        if entry is None:
            manifest = json.loads(store.manifest_bytes(record))
            layers = []
            for desc, diff_id in zip(manifest["layers"], record.diff_ids, strict=True):
                layers.append(f"blobs/sha256/{diff_id[7:]}")
                if diff_id not in sent:
                    sent.add(diff_id)
                    yield from _layer_uncompressed(store, desc, diff_id)
            if record.id not in sent:
                sent.add(record.id)
                yield _member(f"blobs/sha256/{record.id[7:]}", store.config_bytes(record))
            entry = {"Config": f"blobs/sha256/{record.id[7:]}", "RepoTags": [], "Layers": layers}
            entries[record.id] = entry
        if name and name not in entry["RepoTags"]:
            entry["RepoTags"].append(name)
    yield _member("manifest.json", json.dumps(list(entries.values()), indent=1).encode())
    yield _end()


def _layer_uncompressed(store: ImageStore, desc: dict[str, Any], diff_id: str) -> Iterator[bytes]:
    digest = desc["digest"]
    name = f"blobs/sha256/{diff_id[7:]}"
    if digest == diff_id:  # stored uncompressed
        yield from _stream_member(name, store.content.size(digest), store.content.chunks(digest))
        return
    size = sum(len(c) for c in _decompress(store, digest, desc.get("mediaType", "")))
    yield from _stream_member(name, size, _decompress(store, digest, desc.get("mediaType", "")))


def _decompress(store: ImageStore, digest: str, media_type: str) -> Iterator[bytes]:
    if not media_type.endswith(("gzip", "+gzip")):
        raise InvalidArgument(f"cannot write layer {digest} of type {media_type!r} into a docker-archive")
    with store.content.open(digest) as fh, gzip.GzipFile(fileobj=fh, mode="rb") as gz:
        yield from iter(lambda: gz.read(CHUNK_SIZE), b"")


# -- load ---------------------------------------------------------------------------------------


class _Loaded:
    """What one pass over the archive gathered."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.metadata: dict[str, bytes] = {}  # small JSON members by name
        self.files: dict[str, Path] = {}  # other regular members, spooled
        self.blobs: set[str] = set()  # blobs/sha256/<hex> members, in content
        self.links: dict[str, str] = {}  # symlink or hardlink member → the member it names

    def resolve(self, name: str, depth: int = 0) -> str:
        name = posixpath.normpath(name).lstrip("/")
        if name in self.links and depth < 16:
            return self.resolve(self.links[name], depth + 1)
        return name


def load(store: ImageStore, chunks: Iterable[bytes]) -> list[ImageRecord]:
    """Read an OCI layout or docker-archive tar from ``chunks``; returns the images it held."""
    spool = store.tmp / f"load-{uuid.uuid4().hex}"
    spool.mkdir()
    try:
        loaded = _read(store, chunks, _Loaded(spool))
        if "index.json" in loaded.metadata:
            records = _load_oci(store, loaded)
        elif "manifest.json" in loaded.metadata:
            records = _load_docker(store, loaded)
        else:
            raise InvalidArgument(
                "not an image archive: no index.json (OCI layout) or manifest.json (docker)"
            )
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    for record in records:
        store.announce(Subject.IMAGE_LOADED, record)
    return records


def _read(store: ImageStore, chunks: Iterable[bytes], loaded: _Loaded) -> _Loaded:
    stream = io.BufferedReader(ChunkReader(chunks), CHUNK_SIZE)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                name = posixpath.normpath(member.name).lstrip("/")
                if member.issym() or member.islnk():
                    base = posixpath.dirname(name) if member.issym() else ""
                    loaded.links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
                    continue
                if not member.isreg():
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src:
                    m = _BLOB.fullmatch(name)
                    if m is not None:
                        store.content.ingest(_chunks_of(src), expected=f"sha256:{m.group(1)}")
                        loaded.blobs.add(name)
                    elif name.endswith(("json", "oci-layout", "repositories")) and "/" not in name:
                        if member.size > MAX_METADATA:
                            raise InvalidArgument(
                                f"archive member {name!r} is too large ({member.size} bytes)"
                            )
                        loaded.metadata[name] = src.read()
                    else:
                        path = loaded.spool / str(len(loaded.files))
                        with open(path, "wb") as out:
                            shutil.copyfileobj(src, out, CHUNK_SIZE)
                        loaded.files[name] = path
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
            raise
        raise InvalidArgument(f"not a valid tar archive: {exc}") from exc
    return loaded


def _chunks_of(fh: Any) -> Iterator[bytes]:
    yield from iter(lambda: fh.read(CHUNK_SIZE), b"")


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{what} is not JSON: {exc}") from None


def _load_oci(store: ImageStore, loaded: _Loaded) -> list[ImageRecord]:
    index = _json(loaded.metadata["index.json"], "index.json")
    records: list[ImageRecord] = []
    for desc in _manifests(store, index):
        annotations = desc.get("annotations") or {}
        name = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or ""
        # ref.name alone is often just a tag ("latest", "1.36": skopeo's oci:DIR:TAG); it names
        # an image only when it has a repository part
        reference = _as_name(name) if CONTAINERD_NAME in annotations or ":" in name or "/" in name else None
        manifest = store.content.read_bytes(_digest_of(desc))
        records.append(store.add_image(manifest, reference))
    return _unique(records, store)


def _manifests(store: ImageStore, index: Any, depth: int = 0) -> list[dict[str, Any]]:
    """The image manifest descriptors of an index; nested indexes yield this platform's image."""
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument("index.json has no manifests list")
    out: list[dict[str, Any]] = []
    for desc in index["manifests"]:
        media_type = desc.get("mediaType")
        if media_type in (OCI_INDEX, DOCKER_LIST) and depth < 4:
            nested = _json(store.content.read_bytes(_digest_of(desc)), "a nested index")
            mine = [
                d
                for d in _manifests(store, nested, depth + 1)
                if (d.get("platform") or {}).get("architecture", goarch()) == goarch()
            ]
            if not mine:
                raise NotFound(f"the archive's index {desc.get('digest')} has no image for {goarch()}")
            annotated = {
                **mine[0],
                "annotations": {**(mine[0].get("annotations") or {}), **(desc.get("annotations") or {})},
            }
            out.append(annotated)
        elif media_type in (OCI_MANIFEST, DOCKER_MANIFEST, None):
            out.append(desc)
    return out


def _digest_of(desc: Any) -> str:
    digest = desc.get("digest", "") if isinstance(desc, dict) else ""
    check_sha256(digest)
    return str(digest)


def _as_name(name: str | None) -> str | None:
    """A full reference from an annotation; a bare tag or anything unparseable gives no name."""
    if not name:
        return None
    try:
        parsed = refs.parse(name)
    except InvalidArgument:
        return None
    return str(parsed) if parsed.digest is None else None


def _unique(records: list[ImageRecord], store: ImageStore) -> list[ImageRecord]:
    seen: dict[str, ImageRecord] = {}
    for r in records:
        seen[r.id] = r
    return [store.resolve(i) for i in seen]  # fresh: the last one carries every tag added


def _file_digest(store: ImageStore, loaded: _Loaded, member: str) -> str:
    """The content digest of archive member ``member`` (ingesting it if it was spooled)."""
    name = loaded.resolve(member)
    m = _BLOB.fullmatch(name)
    if m is not None and name in loaded.blobs:
        return f"sha256:{m.group(1)}"
    if name in loaded.files:
        return store.content.ingest_file(loaded.files[name])[0]
    if name in loaded.metadata:
        return store.content.write_bytes(loaded.metadata[name])
    raise InvalidArgument(f"archive names {member!r}, which it does not contain")


def _load_docker(store: ImageStore, loaded: _Loaded) -> list[ImageRecord]:
    entries = _json(loaded.metadata["manifest.json"], "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("manifest.json is not a list")
    records: list[ImageRecord] = []
    for entry in entries:
        try:
            config_member, layer_members = entry["Config"], list(entry["Layers"])
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"manifest.json entry without {exc}") from None
        config_digest = _file_digest(store, loaded, config_member)
        config = store.content.read_bytes(config_digest)
        layers = []
        for member in layer_members:
            digest = _file_digest(store, loaded, member)
            with store.content.open(digest) as fh:
                head = fh.read(4)
            media_type = OCI_LAYER_GZIP if head.startswith(b"\x1f\x8b") else OCI_LAYER
            if head.startswith(b"\x28\xb5\x2f\xfd"):
                media_type = OCI_LAYER_ZSTD
            layers.append({"mediaType": media_type, "digest": digest, "size": store.content.size(digest)})
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": layers,
        }
        tags = [t for t in (_as_name(t) for t in entry.get("RepoTags") or []) if t]
        record = store.add_image(
            json.dumps(manifest, separators=(",", ":")).encode(), tags[0] if tags else None
        )
        for tag in tags[1:]:
            store.tag(record.id, tag)
        records.append(record)
    return _unique(records, store)
