"""The Volumes gRPC service, and the container API's mounts ⇄ :class:`MountSpec`. Parse, call, convert.

Core errors become status codes in the ErrorInterceptor; nothing here catches them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from dockyard.api.volumes.v1 import volumes_pb2 as vpb
from dockyard.api.volumes.v1 import volumes_pb2_grpc
from dockyard.runtime.mounts import Kind, MountSpec, mount
from dockyard.runtime.volumes import VolumeRecord, VolumeStore


def mount_from_pb(m: Any) -> MountSpec:
    """A ContainerSpec.Mount, checked; InvalidArgument if malformed."""
    return mount(m.type, m.source, m.target, m.read_only, m.no_copy, m.tmpfs_size, m.tmpfs_mode)


def mount_fields(m: MountSpec) -> dict[str, Any]:
    """A container's mount as ContainerSpec.Mount fields."""
    return {
        "source": m.source,
        "target": m.target,
        "read_only": m.read_only,
        "type": "bind" if m.kind == Kind.BIND else "tmpfs" if m.kind == Kind.TMPFS else "volume",
        "no_copy": m.no_copy,
        "tmpfs_size": m.tmpfs_size,
        "tmpfs_mode": m.tmpfs_mode,
    }


def volume_to_pb(store: VolumeStore, record: VolumeRecord, used_by: list[str], node: str) -> vpb.Volume:
    msg = vpb.Volume(
        name=record.name,
        driver=record.driver,
        mountpoint=str(store.mountpoint(record.name)),
        labels=record.labels,
        options=record.options,
        scope="local",
        anonymous=record.anonymous,
        used_by=used_by,
        node=node,
    )
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(record.created))
    msg.created.CopyFrom(ts)
    return msg


class VolumesServicer(volumes_pb2_grpc.VolumesServicer):
    def __init__(self, store: VolumeStore, node: str) -> None:
        self.store = store
        self.node = node

    def _pb(self, record: VolumeRecord) -> vpb.Volume:
        return volume_to_pb(self.store, record, self.store.users().get(record.name, []), self.node)

    async def Create(self, request: vpb.CreateVolumeRequest, context: Any) -> vpb.Volume:
        record = await self.store.create(
            request.name, dict(request.labels), request.driver, dict(request.options)
        )
        return self._pb(record)

    async def Inspect(self, request: vpb.InspectVolumeRequest, context: Any) -> vpb.Volume:
        return self._pb(await asyncio.to_thread(self.store.get, request.name))

    async def List(self, request: vpb.ListVolumesRequest, context: Any) -> vpb.ListVolumesResponse:
        found = self.store.select(list(request.filters))
        return vpb.ListVolumesResponse(
            volumes=[volume_to_pb(self.store, r, users, self.node) for r, users in found]
        )

    async def Remove(self, request: vpb.RemoveVolumeRequest, context: Any) -> vpb.RemoveVolumeResponse:
        await self.store.remove(request.name, request.force)
        return vpb.RemoveVolumeResponse()

    async def Prune(self, request: vpb.PruneVolumesRequest, context: Any) -> vpb.PruneVolumesResponse:
        deleted, reclaimed = await self.store.prune(list(request.filters))
        return vpb.PruneVolumesResponse(deleted=deleted, space_reclaimed=reclaimed)
