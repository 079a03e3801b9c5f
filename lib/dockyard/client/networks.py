"""``client.networks`` and ``client.volumes``: create, list, inspect, remove."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.api.networks.v1 import networks_pb2 as npb
from dockyard.api.networks.v1 import networks_pb2_grpc
from dockyard.api.volumes.v1 import volumes_pb2 as vpb
from dockyard.api.volumes.v1 import volumes_pb2_grpc
from dockyard.client.calls import unary
from dockyard.client.types import NetworkInfo, VolumeInfo


class Networks:
    def __init__(self, channel: Any) -> None:
        self._stub = networks_pb2_grpc.NetworksStub(channel)

    def create(self, name: str, *, subnet: str = "", labels: Mapping[str, str] | None = None) -> NetworkInfo:
        request = npb.CreateNetworkRequest(name=name, subnet=subnet, labels=dict(labels or {}))
        return NetworkInfo.from_pb(unary(self._stub.Create, request))

    def get(self, network: str) -> NetworkInfo:
        return NetworkInfo.from_pb(unary(self._stub.Inspect, npb.InspectNetworkRequest(id=network)))

    def list(self) -> list[NetworkInfo]:
        return [NetworkInfo.from_pb(n) for n in unary(self._stub.List, npb.ListNetworksRequest()).networks]

    def remove(self, network: str) -> None:
        unary(self._stub.Remove, npb.RemoveNetworkRequest(id=network))


class Volumes:
    def __init__(self, channel: Any) -> None:
        self._stub = volumes_pb2_grpc.VolumesStub(channel)

    def create(self, name: str = "", *, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        """A volume (named ``name``, or an anonymous one)."""
        request = vpb.CreateVolumeRequest(name=name, labels=dict(labels or {}))
        return VolumeInfo.from_pb(unary(self._stub.Create, request))

    def get(self, name: str) -> VolumeInfo:
        return VolumeInfo.from_pb(unary(self._stub.Inspect, vpb.InspectVolumeRequest(name=name)))

    def list(self) -> list[VolumeInfo]:
        return [VolumeInfo.from_pb(v) for v in unary(self._stub.List, vpb.ListVolumesRequest()).volumes]

    def remove(self, name: str, *, force: bool = False) -> None:
        unary(self._stub.Remove, vpb.RemoveVolumeRequest(name=name, force=force))
