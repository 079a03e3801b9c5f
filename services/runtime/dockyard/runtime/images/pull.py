"""Pull an image into the node's store::

    GET  /v2/<repo>/manifests/<tag|digest>   Accept: OCI manifest + index, Docker schema2 + list
      └─ an index / manifest list → the entry for this node's platform → GET …/manifests/<digest>
    GET  /v2/<repo>/blobs/<config>           ┐ at most MAX_CONCURRENT at a time, blobs already in
    GET  /v2/<repo>/blobs/<layer> …          ┘ content skipped; each verified while streaming
    store.add_image(manifest, reference, repo_digest="<registry>/<repo>@<digest>")

Contracts and costs:

* The event loop never touches a blob's bytes on disk: a download is hashed and written by
  ``ContentStore.ingest`` in a worker thread that pulls blocks (≤ 1 MiB) from the response on the
  loop; aiohttp keeps reading ahead (up to ``2 * READ_BUFFER``) while the thread writes, so network
  and disk overlap. Memory per download is bounded (≈ 2 * READ_BUFFER + BLOCK = 9 MiB) whatever
  the blob size.
* Nothing unverified becomes visible: a blob whose digest or size differs from its descriptor
  is refused by ingest (InvalidArgument) and leaves nothing in content. The image is recorded
  only after every blob is in content.
* Where from is registries.conf's call (``dockyard.core.registries``): a short name may mean
  several names (aliases, search list, else Docker Hub), each name is tried at its registry's
  mirrors in order, then at its location; the first that serves it wins. The image is stored
  under the name as resolved, in docker's familiar form (``busybox:latest``), whichever host
  served it. When every source fails, one line names each and what it answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol

import aiohttp
import structlog

from dockyard.core.errors import (
    DockyardError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from dockyard.core.oci.digest import sha256_digest
from dockyard.core.oci.mediatypes import INDEX_TYPES
from dockyard.core.oci.reference import Reference
from dockyard.core.registries import RegistriesConf, Source, candidates, sources
from dockyard.runtime.images.content import ContentStore
from dockyard.runtime.images.credentials import Credentials
from dockyard.runtime.images.manifests import (
    Platform,
    choose_platform,
    descriptor_fields,
    fetch_manifest,
    host_platform,
)
from dockyard.runtime.images.progress import LayerProgress, Progress, ProgressFn, short_id
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
from dockyard.runtime.images.store import ImageRecord

log = structlog.get_logger("dockyard.runtime.distribution")


class ImageStoreLike(Protocol):
    """What the client needs of the node's image store (``dockyard.runtime.images.store.ImageStore``)."""

    @property
    def content(self) -> ContentStore: ...

    def add_image(
        self, manifest: bytes, reference: str | None, repo_digest: str | None = None
    ) -> ImageRecord: ...

    def resolve(self, ref: str) -> ImageRecord: ...

    def manifest_bytes(self, record: ImageRecord) -> bytes: ...

    def discard_unheld(self, digests: Iterable[str]) -> int: ...


class _Aborted(Exception):
    """The download was cancelled; ingest must stop and remove its partial file."""


async def _ingest_response(
    content: ContentStore,
    resp: aiohttp.ClientResponse,
    expected: str,
    size: int,
    on_bytes: Callable[[int], None],
) -> None:
    """Hash and write ``resp``'s body into content in a worker thread; verified against ``expected``.

    The thread asks the loop for the next block (``run_coroutine_threadsafe``); between two asks
    aiohttp keeps filling its read-ahead buffer from the socket, so the network never waits for
    the disk for long, and the loop never waits for either.
    """
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    pending: list[Future[bytes]] = []

    async def next_block() -> bytes:
        if stop.is_set():
            raise _Aborted()
        parts: list[bytes] = []
        n = 0
        while n < BLOCK:
            data = await resp.content.read(BLOCK - n)
            if not data:
                break
            parts.append(data)
            n += len(data)
            on_bytes(len(data))
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def blocks() -> Iterator[bytes]:
        while True:
            if stop.is_set():
                raise _Aborted()
            future = asyncio.run_coroutine_threadsafe(next_block(), loop)
            pending[:] = [future]
            block = future.result()
            if not block:
                return
            yield block

    work = loop.run_in_executor(None, functools.partial(content.ingest, blocks(), expected, size))
    try:
        await asyncio.shield(work)
    except BaseException:
        # Cancelled (a sibling blob failed, or the caller gave up) or failed: stop the thread and
        # wait until it has removed its partial file, so nothing is in flight once pull returns.
        stop.set()
        for future in pending:
            future.cancel()
        with contextlib.suppress(BaseException):
            await work
        raise


async def pull(
    store: ImageStoreLike,
    reference: str,
    *,
    platform: Platform | None = None,
    insecure: bool = False,
    credentials: Credentials | None = None,
    progress: ProgressFn | None = None,
    registries: RegistriesConf | None = None,
) -> ImageRecord:
    """Pull ``reference`` (``[HOST[:PORT]/]NAME[:TAG|@DIGEST]``) into ``store``; returns its ImageRecord.

    ``registries`` (default: none, docker's behaviour) resolves short names and lists mirrors.
    An index / manifest list resolves to ``platform`` (default: this node's). The record's repo
    digest is that of what the reference names (the index, for a multi-platform image). Emits no
    event: the caller does (``dockyard.runtime.transfer``), once this returns. Cost per source
    tried: one manifest request (two for an index), then one GET per blob not yet in content,
    MAX_CONCURRENT at a time; bytes are written once, by the content store.
    """
    conf = registries or RegistriesConf()
    failures: list[tuple[Source, DockyardError]] = []
    for name in candidates(conf, reference):
        for source in sources(conf, name):
            try:
                return await _pull_from(store, name, source, platform, insecure, credentials, progress)
            except (Unavailable, NotFound, Unauthenticated, PermissionDenied) as e:
                log.info("pull_source_failed", reference=str(name), source=source.label, error=str(e))
                failures.append((source, e))
    raise _all_failed(reference, failures)


async def _pull_from(
    store: ImageStoreLike,
    name: Reference,
    source: Source,
    platform: Platform | None,
    insecure: bool,
    credentials: Credentials | None,
    progress: ProgressFn | None,
) -> ImageRecord:
    creds = await credentials_for(credentials, source.ref.domain)
    async with open_session(
        source.ref.domain, insecure=insecure or source.insecure, credentials=creds
    ) as remote:
        return await _Pull(store, name, source.ref, remote, platform or host_platform(), progress).run()


def _all_failed(reference: str, failures: list[tuple[Source, DockyardError]]) -> DockyardError:
    """One line for a pull no source could serve: the only error as is, or each source's answer."""
    if len(failures) == 1:
        return failures[0][1]
    last = failures[-1][1]
    kind = Unavailable if all(isinstance(e, Unavailable) for _, e in failures) else type(last)
    said = "; ".join(f"{s.label} ({s.ref}): {' '.join(str(e).split())}" for s, e in failures)
    return kind(f"cannot pull {reference}: {said}", reason=last.reason, tried=[s.label for s, _ in failures])


class _Pull:
    """Pull ``ref`` (the name the store keeps) from ``wire`` (the same image as one host serves it:
    a mirror's or the location's host and repository path)."""

    def __init__(
        self,
        store: ImageStoreLike,
        ref: Reference,
        wire: Reference,
        remote: RegistrySession,
        want: Platform,
        progress: ProgressFn | None,
    ) -> None:
        self.store = store
        self.ref = ref
        self.wire = wire
        self.remote = remote
        self.want = want
        self.emit = progress
        self.scopes = (f"repository:{wire.path}:pull",)
        self.log = log.bind(reference=str(ref))

    def _event(self, status: str) -> None:
        if self.emit is not None:
            self.emit(Progress("", status))

    async def run(self) -> ImageRecord:
        ref = self.ref
        self._event(f"Pulling from {ref.path}")
        started = time.monotonic()
        target = ref.digest or ref.tag or "latest"
        body, media, doc = await self._manifest(target, verify=ref.digest)
        repo_digest = f"{ref.name}@{sha256_digest(body)}"
        if media in INDEX_TYPES:
            child = choose_platform(doc, self.want, str(ref))
            body, media, doc = await self._manifest(child, verify=child)
            if media in INDEX_TYPES:
                raise InvalidArgument(f"{ref}: an index inside an index is not supported")
        config_digest, config_size, _ = descriptor_fields(doc.get("config"), "the config")
        raw_layers = doc.get("layers")
        if not isinstance(raw_layers, list):
            raise InvalidArgument(f"malformed manifest for {ref}: no layers")
        layers = [descriptor_fields(x, f"layer {i}") for i, x in enumerate(raw_layers)]

        content = self.store.content
        await asyncio.to_thread(content.write_bytes, body)
        wanted = [(config_digest, config_size, False)] + [(d, s, True) for d, s, _ in layers]
        present = await asyncio.to_thread(lambda: {d for d, _, _ in wanted if content.has(d)})
        downloaded: list[str] = []
        seen: set[str] = set()
        jobs: list[Callable[[], Awaitable[None]]] = []
        for digest, size, is_layer in wanted:
            if digest in seen:
                continue
            seen.add(digest)
            tracker = LayerProgress(self.emit if is_layer else None, digest, size, "Downloading")
            if digest in present:
                tracker.event("Already exists")
                continue
            tracker.event("Pulling fs layer")
            if is_layer:
                downloaded.append(digest)
            jobs.append(functools.partial(self._blob, digest, size, tracker))
        reference = None if ref.digest else str(ref)
        try:
            await run_bounded(jobs, MAX_CONCURRENT)
            record = await asyncio.to_thread(self.store.add_image, body, reference, repo_digest)
        except BaseException:
            # what this pull stored and no image holds: else uncounted by `system df`, never pruned
            fetched = [sha256_digest(body), *(d for d, _, _ in wanted if d not in present)]
            await asyncio.shield(asyncio.to_thread(self.store.discard_unheld, fetched))
            raise
        for digest in downloaded:
            LayerProgress(self.emit, digest, 0, "").event("Pull complete")
        self._event(f"Digest: {repo_digest.rpartition('@')[2]}")
        self._event(
            f"Status: Downloaded newer image for {ref}" if jobs else f"Status: Image is up to date for {ref}"
        )
        self.log.info(
            "pulled", blobs=len(jobs), seconds=round(time.monotonic() - started, 3), repo_digest=repo_digest
        )
        return record

    async def _manifest(self, target: str, *, verify: str | None) -> tuple[bytes, str, dict[str, Any]]:
        return await fetch_manifest(self.remote, self.wire, self.scopes, target, verify=verify)

    async def _blob(self, digest: str, size: int, tracker: LayerProgress) -> None:
        url = self.remote.url(f"/v2/{self.wire.path}/blobs/{digest}")
        async for attempt in transfer_retry():
            with attempt:
                tracker.restart()
                resp = await self.remote.send("GET", url, scopes=self.scopes)
                async with resp:
                    await check_response(resp, self.remote, "pull", f"{self.ref.name}@{digest}", "blob")
                    try:
                        await _ingest_response(self.store.content, resp, digest, size, tracker.add)
                    except InvalidArgument as e:
                        raise InvalidArgument(
                            f"{self.ref.name}: blob {short_id(digest)} from {self.remote.registry} "
                            f"failed verification: {e}",
                            digest=digest,
                        ) from None
        tracker.event("Download complete")
