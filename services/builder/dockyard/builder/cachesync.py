"""The build cache shared through a registry (``--cache-to``/``--cache-from type=registry``) and
``build --push``: the registry side of a build, driven by the engine at its start and end.

A step's result is an image of the runtime's store (``cache.py``: step key → image id), so the
cache in a registry is those images plus the map. It is one OCI image index, tagged ``ref``, in
``ref``'s repository, whose manifests are the step images (pushed there by digest, blobs the
registry has skipped)::

    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
     "artifactType": "application/vnd.dockyard.build.cache.v1+json",
     "annotations": {"dev.dockyard.build.cache": "v1"},
     "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:…", "size": 1234,
                    "annotations": {"dev.dockyard.build.cache.keys": "<key>,<key>"}}, …]}

(BuildKit's own cache manifest format is not reproduced: only the flags are docker buildx's.)

- **Export** (``RegistryCache.export``), after the image is made: the step images the build
  used or made — every stage's (``mode=max``) or those of the final image's chain (``mode=min``,
  the default, as buildx's) — are pushed ancestors first (so each layer is uploaded once and
  found by HEAD afterwards), then the index, whose bytes depend only on what it lists.
- **Import** (``RegistryCache.load``), at the build's start: the index only. On a local cache
  miss whose key it lists, the engine asks ``fetch``, which pulls that manifest by digest into
  the node; the image id is the config digest, so it is the id the exporting build had, and
  every later step's key (built on it) matches too.

Registry credentials are the runtime's (``dockyard login``): every registry call is a call to
the node (``RegistryRuntime``, which ``remote.py`` implements over gRPC).
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from dockyard.core.cacheoptions import CacheSpec
from dockyard.core.errors import InvalidArgument
from dockyard.core.oci.digest import is_sha256
from dockyard.core.oci.manifest import ManifestDescriptor
from dockyard.core.oci.mediatypes import OCI_INDEX
from dockyard.core.oci.reference import registry_ref

CACHE_ARTIFACT_TYPE = "application/vnd.dockyard.build.cache.v1+json"
CACHE_ANNOTATION = "dev.dockyard.build.cache"
KEYS_ANNOTATION = "dev.dockyard.build.cache.keys"

_KEY = re.compile(r"[0-9a-f]{64}")
# --- the index ----------------------------------------------------------------------------------------


def encode_index(entries: Iterable[tuple[ManifestDescriptor, Collection[str]]]) -> bytes:
    """The cache index over ``(step image's manifest, its step keys)``; the same entries give the
    same bytes (sorted, compact JSON), so an unchanged build re-exports an unchanged index."""
    manifests = [
        {
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.size,
            "annotations": {KEYS_ANNOTATION: ",".join(sorted(keys))},
        }
        for m, keys in sorted(entries, key=lambda e: e[0].digest)
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": CACHE_ARTIFACT_TYPE,
        "annotations": {CACHE_ANNOTATION: "v1"},
        "manifests": manifests,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_index(body: bytes, ref: str) -> dict[str, str]:
    """Step key → manifest digest from a cache index; InvalidArgument for anything else."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidArgument(f"{ref} is not a Dockyard build cache: not JSON") from None
    ours = isinstance(doc, dict) and (
        doc.get("artifactType") == CACHE_ARTIFACT_TYPE
        or (isinstance(doc.get("annotations"), dict) and CACHE_ANNOTATION in doc["annotations"])
    )
    if not ours or not isinstance(doc.get("manifests"), list):
        raise InvalidArgument(
            f"{ref} is not a Dockyard build cache (an index of artifactType {CACHE_ARTIFACT_TYPE})"
        )
    out: dict[str, str] = {}
    for entry in doc["manifests"]:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        notes = entry.get("annotations") if isinstance(entry, dict) else None
        keys = notes.get(KEYS_ANNOTATION) if isinstance(notes, dict) else None
        if not is_sha256(digest) or not isinstance(keys, str):
            raise InvalidArgument(f"{ref}: a malformed entry in the build cache index")
        for key in keys.split(","):
            if not _KEY.fullmatch(key):
                raise InvalidArgument(f"{ref}: a malformed step key in the build cache index")
            out.setdefault(key, digest)
    return out


# --- which steps a build used --------------------------------------------------------------------------

STAGE: contextvars.ContextVar[int | None] = contextvars.ContextVar("dockyard_build_stage", default=None)
"""The stage whose steps the current task runs (None: the build's own steps, e.g. --label)."""

T = TypeVar("T")


async def in_stage(index: int, work: Awaitable[T]) -> T:
    """Await ``work`` with ``STAGE`` set; run as its own task (``gather`` makes one), the setting
    stays in that task, so concurrent stages each see their own."""
    STAGE.set(index)
    return await work


@dataclass
class UsedSteps:
    """The step keys a build looked up (hit or not), with the stages that looked each up."""

    stages: dict[str, set[int | None]] = field(default_factory=dict)

    def add(self, key: str) -> None:
        self.stages.setdefault(key, set()).add(STAGE.get())

    def keys(self, only: Collection[int | None] | None = None) -> list[str]:
        """In first-use order; only those of the stages ``only`` when given."""
        return [k for k, s in self.stages.items() if only is None or s & set(only)]


# --- the registry work ---------------------------------------------------------------------------------

Say = Callable[[str], Awaitable[None]]
PushProgress = Callable[[str, str], Awaitable[None]]  # (layer's short id or "", status)


class RegistryRuntime(Protocol):
    """What this needs of a runtime node: its store and its registry client (with its logins)."""

    async def locate(self, image: str) -> tuple[str, int]:
        """(manifest digest, number of layers) of a local image."""
        ...

    async def push(self, reference: str, progress: PushProgress) -> ManifestDescriptor:
        """Push the local image ``reference`` names (a tag, or NAME@<manifest digest>)."""
        ...

    async def pull(self, reference: str) -> str:
        """Pull ``reference`` into the node; its image id."""
        ...

    async def get_manifest(self, reference: str) -> tuple[ManifestDescriptor, bytes]: ...

    async def put_manifest(self, reference: str, media_type: str, body: bytes) -> ManifestDescriptor: ...


@dataclass
class _Counts:
    uploaded: int = 0
    existing: int = 0

    async def __call__(self, layer: str, status: str) -> None:
        if not layer:
            return
        if status == "Pushed" or status.startswith("Mounted from"):
            self.uploaded += 1
        elif status == "Layer already exists":
            self.existing += 1


class RegistryCache:
    """Registry caches for one build: what ``--cache-from`` indexes list, and the exports."""

    def __init__(self, registry: RegistryRuntime) -> None:
        self.registry = registry
        self._sources: dict[str, str] = {}  # step key → NAME@<manifest digest>

    async def load(self, spec: CacheSpec) -> int:
        """Read the index at ``spec.ref``; its keys become ``fetch``able (earlier loads win).
        Returns the number of keys. NotFound/Unavailable/InvalidArgument as the registry says."""
        name = registry_ref(spec.ref, "--cache-from ref").name
        _, body = await self.registry.get_manifest(spec.ref)
        entries = decode_index(body, spec.ref)
        for key, digest in entries.items():
            self._sources.setdefault(key, f"{name}@{digest}")
        return len(entries)

    def has(self, key: str) -> bool:
        return key in self._sources

    async def fetch(self, key: str) -> str | None:
        """The step image for ``key`` pulled into the node (its id), or None when no cache lists
        it. A failed pull forgets the key (it is not tried again in this build) and raises."""
        source = self._sources.get(key)
        if source is None:
            return None
        try:
            return await self.registry.pull(source)
        except Exception:
            self._sources.pop(key, None)
            raise

    async def export(
        self, spec: CacheSpec, images: Mapping[str, Collection[str]], say: Say
    ) -> ManifestDescriptor:
        """Push the step images ``images`` (image id → its keys) to ``spec.ref``'s repository,
        ancestors first, then the index under ``spec.ref``'s tag; the index's descriptor."""
        name = registry_ref(spec.ref, "--cache-to ref").name
        located = [(await self.registry.locate(image), keys) for image, keys in images.items()]
        located.sort(key=lambda item: item[0][1])  # fewer layers first: parents before children
        entries: list[tuple[ManifestDescriptor, Collection[str]]] = []
        for (digest, layers), keys in located:
            counts = _Counts()
            pushed = await self.registry.push(f"{name}@{digest}", counts)
            entries.append((pushed, keys))
            sent = f"{counts.uploaded} uploaded, {counts.existing} already there"
            await say(f"{digest[:19]}: {layers} layer(s), {sent}")
        index = encode_index(entries)
        desc = await self.registry.put_manifest(spec.tagged, OCI_INDEX, index)
        await say(f"{spec.tagged}: cache index {desc.digest} ({len(entries)} step images)")
        return desc

    async def push(self, reference: str, say: Say) -> ManifestDescriptor:
        """``build --push`` of one tag: docker's push lines (a layer's final state, the digest)."""

        async def progress(layer: str, status: str) -> None:
            if layer and status in ("Pushing", "Preparing", "Waiting"):
                return  # byte counts and queueing: noise in a build log
            await say(f"{layer}: {status}" if layer else status)

        return await self.registry.push(reference, progress)
