"""Pull, push and login for the servicer: progress as a stream, credentials kept, events published.

The registry client (``images.pull``, ``images.push``) reports progress through a callback on the
event loop; this turns it into an async stream the servicer relays as it comes, with the result as
the last item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from dockyard.api.types.v1 import types_pb2
from dockyard.core.errors import NotFound
from dockyard.core.events import Publisher, Subject, new_event
from dockyard.core.oci.manifest import ManifestDescriptor
from dockyard.runtime.images.credentials import (
    ChainedCredentials,
    Credentials,
    CredentialStore,
    normalize_registry,
)
from dockyard.runtime.images.manifests import get_manifest, put_manifest
from dockyard.runtime.images.pull import pull
from dockyard.runtime.images.push import push
from dockyard.runtime.images.registries_conf import load as load_registries
from dockyard.runtime.images.registry_client import login
from dockyard.runtime.images.store import ImageStore


class Transfers:
    """``credentials`` are the node's ``dockyard login``s (written by login/logout); ``platform``, when
    given, the platform's own logins (read only), used for a registry the node has no login for."""

    def __init__(
        self,
        store: ImageStore,
        credentials: CredentialStore,
        publisher: Publisher,
        source: str,
        *,
        platform: Credentials | None = None,
    ):
        self.store = store
        self.credentials = credentials
        self.publisher = publisher
        self.source = source
        self.lookup: Credentials = (
            ChainedCredentials(credentials, platform) if platform is not None else credentials
        )

    async def _relay(self, work: Awaitable[Any], queue: asyncio.Queue[Any]) -> AsyncIterator[tuple[Any, Any]]:
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (item := await queue.get()) is not None:
                yield (
                    types_pb2.Progress(
                        id=item.id, status=item.status, current=item.current, total=item.total
                    ),
                    None,
                )
            yield None, task.result()
        finally:
            task.cancel()

    async def pull(self, reference: str, *, insecure: bool) -> AsyncIterator[tuple[Any, Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        registries = await asyncio.to_thread(load_registries)  # read at each pull: edits apply at once
        work = pull(
            self.store,
            reference,
            insecure=insecure,
            credentials=self.lookup,
            progress=queue.put_nowait,
            registries=registries,
        )
        async for progress, record in self._relay(work, queue):
            if record is not None:
                self.publisher.publish(
                    new_event(
                        Subject.IMAGE_PULLED, self.source, reference, {"id": record.id, "name": reference}
                    )
                )
            yield progress, record

    async def push(self, reference: str, *, insecure: bool) -> AsyncIterator[tuple[Any, Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        work = push(
            self.store, reference, insecure=insecure, credentials=self.lookup, progress=queue.put_nowait
        )
        async for progress, desc in self._relay(work, queue):
            if desc is not None:
                self.publisher.publish(
                    new_event(
                        Subject.IMAGE_PUSHED,
                        self.source,
                        reference,
                        {"digest": desc.digest, "name": reference},
                    )
                )
                desc = types_pb2.Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)
            yield progress, desc

    async def get_manifest(self, reference: str, *, insecure: bool) -> tuple[ManifestDescriptor, bytes]:
        return await get_manifest(reference, insecure=insecure, credentials=self.lookup)

    async def put_manifest(
        self, reference: str, body: bytes, media_type: str, *, insecure: bool
    ) -> ManifestDescriptor:
        desc = await put_manifest(reference, body, media_type, insecure=insecure, credentials=self.lookup)
        self.publisher.publish(
            new_event(
                Subject.IMAGE_PUSHED, self.source, reference, {"digest": desc.digest, "name": reference}
            )
        )
        return desc

    async def login(self, registry: str, username: str, password: str, insecure: bool) -> None:
        await login(registry, username, password, insecure)
        await asyncio.to_thread(self.credentials.set, registry, username, password)

    def logout(self, registry: str) -> None:
        if not self.credentials.remove(registry):
            raise NotFound(f"not logged in to {normalize_registry(registry)}")
