"""Push an image of the node's store, per blob (layers, then the config), MAX_CONCURRENT at a time::

    HEAD /v2/<repo>/blobs/<digest>                       200 → skipped ("Layer already exists")
    POST /v2/<repo>/blobs/uploads/?mount=<d>&from=<src>  201 → mounted (when the image came from
                                                         <src> on the same registry)
    POST /v2/<repo>/blobs/uploads/  →  PUT <location>?digest=<d>   streamed from disk
    PUT  /v2/<repo>/manifests/<tag>                      the stored manifest bytes, unchanged

An upload reads the blob file in a worker thread, 1 MiB at a time: the event loop never touches
a blob's bytes on disk, and memory stays bounded whatever the blob size.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import structlog

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.core.oci.digest import sha256_digest
from dockyard.core.oci.manifest import ManifestDescriptor
from dockyard.core.oci.mediatypes import IMAGE_TYPES
from dockyard.core.oci.reference import Reference, parse
from dockyard.runtime.images.credentials import Credentials
from dockyard.runtime.images.manifests import classify, descriptor_fields, send_manifest
from dockyard.runtime.images.progress import LayerProgress, Progress, ProgressFn
from dockyard.runtime.images.pull import ImageStoreLike
from dockyard.runtime.images.registry_client import (
    BLOCK,
    MAX_CONCURRENT,
    RegistrySession,
    check_response,
    credentials_for,
    open_session,
    run_bounded,
    transfer_retry,
)

log = structlog.get_logger("dockyard.runtime.distribution")


async def push(
    store: ImageStoreLike,
    reference: str,
    *,
    insecure: bool = False,
    credentials: Credentials | None = None,
    progress: ProgressFn | None = None,
    source_reference: str | None = None,
) -> ManifestDescriptor:
    """Push the local image ``source_reference`` (default: ``reference``) to ``reference``.

    Blobs the registry has are skipped (HEAD), blobs of an image pulled from another repository
    of the same registry are mounted from it, the rest is uploaded monolithically (POST, then PUT
    streamed from disk). The manifest goes up byte for byte as stored, so its digest does not
    change. Returns the manifest's descriptor.
    """
    ref = parse(reference)
    registry = ref.domain
    record = await asyncio.to_thread(store.resolve, source_reference or reference)
    manifest = await asyncio.to_thread(store.manifest_bytes, record)
    media, doc = classify(manifest, record.manifest_media_type)
    if media not in IMAGE_TYPES:
        raise FailedPrecondition(f"{source_reference or reference} is not a single-platform image manifest")
    digest = sha256_digest(manifest)
    if ref.digest is not None and ref.digest != digest:
        raise InvalidArgument(f"{reference}: the local image's manifest is {digest}, not {ref.digest}")
    config = descriptor_fields(doc.get("config"), "the config")
    layers = [descriptor_fields(x, f"layer {i}") for i, x in enumerate(doc.get("layers") or [])]
    mount_from = _mount_source(record.repo_digests, registry, ref.path)
    creds = await credentials_for(credentials, registry)
    async with open_session(registry, insecure=insecure, credentials=creds) as remote:
        return await _Push(store, ref, remote, progress, mount_from).run(
            manifest, media, digest, config, layers
        )


def _mount_source(repo_digests: tuple[str, ...], registry: str, repository: str) -> str | None:
    """Another repository of ``registry`` this image was pulled from (for cross-repo mounts)."""
    for raw in repo_digests:
        try:
            other = parse(str(raw))
        except InvalidArgument:
            continue
        if other.domain == registry and other.path != repository:
            return other.path
    return None


class _Push:
    def __init__(
        self,
        store: ImageStoreLike,
        ref: Reference,
        remote: RegistrySession,
        progress: ProgressFn | None,
        mount_from: str | None,
    ) -> None:
        self.content = store.content
        self.ref = ref
        self.remote = remote
        self.emit = progress
        self.mount_from = mount_from
        scopes = [f"repository:{ref.path}:pull,push"]
        if mount_from:
            scopes.append(f"repository:{mount_from}:pull")
        self.scopes = tuple(scopes)
        self.log = log.bind(reference=str(ref))

    async def run(
        self,
        manifest: bytes,
        media: str,
        digest: str,
        config: tuple[str, int, str],
        layers: list[tuple[str, int, str]],
    ) -> ManifestDescriptor:
        started = time.monotonic()
        if self.emit is not None:
            self.emit(Progress("", f"The push refers to repository [{self.ref.name}]"))
        seen: set[str] = set()
        jobs: list[Callable[[], Awaitable[None]]] = []
        for d, size, _ in layers:
            if d in seen:
                continue
            seen.add(d)
            tracker = LayerProgress(self.emit, d, size, "Pushing")
            tracker.event("Preparing")
            jobs.append(functools.partial(self._blob, d, tracker))
        await run_bounded(jobs, MAX_CONCURRENT)
        if config[0] not in seen:  # after the layers, as docker does: a config names finished layers
            await self._blob(config[0], LayerProgress(None, config[0], config[1], "Pushing"))

        target = self.ref.digest or self.ref.tag or "latest"
        await send_manifest(self.remote, self.ref, self.scopes, manifest, media, digest)
        if self.emit is not None:
            self.emit(Progress("", f"{target}: digest: {digest} size: {len(manifest)}"))
        self.log.info("pushed", digest=digest, seconds=round(time.monotonic() - started, 3))
        return ManifestDescriptor(media, digest, len(manifest))

    async def _blob(self, digest: str, tracker: LayerProgress) -> None:
        path = await asyncio.to_thread(self.content.path, digest)
        size = tracker.total
        repo = self.ref.path
        name = str(self.ref)  # what the user pushes: errors name it, not one of its blobs
        async for attempt in transfer_retry():
            with attempt:
                tracker.restart()
                resp = await self.remote.send(
                    "HEAD", self.remote.url(f"/v2/{repo}/blobs/{digest}"), scopes=self.scopes
                )
                async with resp:
                    if resp.status == 200:
                        tracker.event("Layer already exists")
                        return
                    if resp.status != 404:
                        await check_response(resp, self.remote, "push", name, "blob")
                query = {"mount": digest, "from": self.mount_from} if self.mount_from else {}
                start = self.remote.url(f"/v2/{repo}/blobs/uploads/") + (
                    f"?{urlencode(query)}" if query else ""
                )
                resp = await self.remote.send("POST", start, scopes=self.scopes, body=b"")
                async with resp:
                    if resp.status == 201 and self.mount_from:
                        tracker.event(f"Mounted from {self.mount_from}")
                        return
                    await check_response(resp, self.remote, "push", name, "upload")
                    location = resp.headers.get("Location")
                if resp.status != 202 or not location:
                    raise InvalidArgument(
                        f"{self.remote.registry} started no upload for {name} (HTTP {resp.status})"
                    )
                put_url = _with_query(urljoin(start, location), digest=digest)
                resp = await self.remote.send(
                    "PUT",
                    put_url,
                    scopes=self.scopes,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                    body=lambda: _file_chunks(path, tracker.add),
                )
                async with resp:
                    await check_response(resp, self.remote, "push", name, "blob")
        tracker.event("Pushed")


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit(parts._replace(query=query))


async def _file_chunks(path: Path, on_bytes: Callable[[int], None]) -> AsyncIterator[bytes]:
    """The file's bytes, read BLOCK at a time in a worker thread (never on the loop)."""
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, BLOCK):
            on_bytes(len(chunk))
            yield chunk
    finally:
        fh.close()
