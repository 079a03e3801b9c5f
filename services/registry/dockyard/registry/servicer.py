"""gRPC RegistryAdmin over the registry core: parse, call one core method (off the loop), convert."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc

from dockyard.adapters.grpc.convert import timestamp
from dockyard.api.registry.v1 import registry_pb2 as pb
from dockyard.api.registry.v1 import registry_pb2_grpc
from dockyard.api.types.v1 import types_pb2
from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.registry.auth import Authorizer, Login
from dockyard.registry.gc import run_gc
from dockyard.registry.registry import Registry

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_SWEPT_LISTED = 1000


def _page(limit: int) -> int:
    if limit < 0:
        raise InvalidArgument("limit must not be negative")
    return min(limit or DEFAULT_PAGE, MAX_PAGE)


def _split(items: list[str], limit: int) -> tuple[list[str], str]:
    """Items fetched with ``limit + 1``: the page and the cursor for the next one."""
    if len(items) > limit:
        return items[:limit], items[limit - 1]
    return items, ""


class RegistryAdminServicer(registry_pb2_grpc.RegistryAdminServicer):
    def __init__(self, registry: Registry, authorizer: Authorizer | None = None) -> None:
        self._registry = registry
        self._authorizer = authorizer

    async def ListRepositories(
        self, request: pb.ListRepositoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRepositoriesResponse:
        limit = _page(request.limit)
        names = await asyncio.to_thread(self._registry.list_repositories, limit + 1, request.after)
        page, nxt = _split(names, limit)
        return pb.ListRepositoriesResponse(repositories=page, next=nxt)

    async def ListTags(
        self, request: pb.ListTagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTagsResponse:
        limit = _page(request.limit)
        tags = await asyncio.to_thread(self._registry.list_tags, request.repository, limit + 1, request.after)
        page, nxt = _split(tags, limit)
        return pb.ListTagsResponse(repository=request.repository, tags=page, next=nxt)

    async def InspectManifest(
        self, request: pb.InspectManifestRequest, context: grpc.aio.ServicerContext
    ) -> pb.InspectManifestResponse:
        def inspect() -> pb.InspectManifestResponse:
            stored = self._registry.get_manifest(request.repository, request.reference)
            tags = [
                tag
                for tag in self._registry.list_tags(request.repository)
                if self._registry.resolve(request.repository, tag) == stored.digest
            ]
            return pb.InspectManifestResponse(
                descriptor=types_pb2.Descriptor(
                    media_type=stored.media_type, digest=str(stored.digest), size=stored.size
                ),
                content=stored.data,
                tags=tags,
            )

        return await asyncio.to_thread(inspect)

    async def DeleteManifest(
        self, request: pb.DeleteManifestRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteManifestResponse:
        await asyncio.to_thread(self._registry.delete_manifest, request.repository, request.reference)
        return pb.DeleteManifestResponse()

    async def GarbageCollect(
        self, request: pb.GarbageCollectRequest, context: grpc.aio.ServicerContext
    ) -> pb.GarbageCollectResponse:
        if request.grace_seconds < 0:
            raise InvalidArgument("grace_seconds must not be negative")
        grace = float(request.grace_seconds) if request.HasField("grace_seconds") else None
        result = await asyncio.to_thread(run_gc, self._registry, request.dry_run, grace)
        return pb.GarbageCollectResponse(
            blobs_marked=result.marked,
            blobs_swept=result.deleted_blobs,
            bytes_freed=result.freed_bytes,
            dry_run=result.dry_run,
            finished_at=timestamp(datetime.now(UTC)),
            swept=list(result.deleted[:MAX_SWEPT_LISTED]),
        )

    async def Usage(self, request: pb.UsageRequest, context: grpc.aio.ServicerContext) -> pb.UsageResponse:
        def usage() -> pb.UsageResponse:
            used = self._registry.usage()
            manifests = sum(
                len(self._registry.manifest_digests(n)) for n in self._registry.list_repositories()
            )
            return pb.UsageResponse(
                repositories=used.repositories,
                manifests=manifests,
                blobs=used.blobs,
                bytes=used.bytes,
                uploads_in_progress=self._registry.active_uploads(),
            )

        return await asyncio.to_thread(usage)

    async def GetCredentials(
        self, request: pb.GetCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCredentialsResponse:
        config = self._registry.config
        if self._authorizer is None or not self._authorizer.enabled:
            raise FailedPrecondition(
                "the registry runs without authentication (--auth none): no login needed"
            )
        if config.credentials_path is None:
            raise FailedPrecondition("the registry was given no login to hand out (--credentials-file)")
        login = await asyncio.to_thread(Login.load, config.credentials_path)
        host = "127.0.0.1" if config.host in ("", "0.0.0.0", "::", "[::]") else config.host
        return pb.GetCredentialsResponse(
            registry=f"{host}:{config.port}",
            username=login.username,
            password=login.password,
            auth=str(config.auth_mode),
            anonymous=",".join(sorted(self._authorizer.anonymous)),
        )
