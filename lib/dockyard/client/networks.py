"""``client.networks`` and ``client.volumes``: create, list, inspect, remove, connect, prune."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dockyard.api.networks.v1 import networks_pb2 as npb
from dockyard.api.networks.v1 import networks_pb2_grpc
from dockyard.api.volumes.v1 import volumes_pb2 as vpb
from dockyard.api.volumes.v1 import volumes_pb2_grpc
from dockyard.client.calls import unary
from dockyard.client.types import NetworkInfo, Pruned, VolumeInfo


class Networks:
    def __init__(self, channel: Any) -> None:
        self._stub = networks_pb2_grpc.NetworksStub(channel)

    def create(
        self,
        name: str,
        *,
        subnet: str = "",
        labels: Mapping[str, str] | None = None,
        gateway: str = "",
        driver: str = "",
    ) -> NetworkInfo:
        """A bridge network (``driver`` "" or bridge); without ``subnet``, the first free 10.89.N.0/24.
        AlreadyExists when the name is taken."""
        request = npb.CreateNetworkRequest(
            name=name, subnet=subnet, labels=dict(labels or {}), gateway=gateway, driver=driver
        )
        return NetworkInfo.from_pb(unary(self._stub.Create, request))

    def get(self, network: str) -> NetworkInfo:
        return NetworkInfo.from_pb(unary(self._stub.Inspect, npb.InspectNetworkRequest(id=network)))

    def list(self) -> list[NetworkInfo]:
        return [NetworkInfo.from_pb(n) for n in unary(self._stub.List, npb.ListNetworksRequest()).networks]

    def remove(self, network: str) -> None:
        unary(self._stub.Remove, npb.RemoveNetworkRequest(id=network))

    def connect(self, network: str, container: str, *, aliases: Sequence[str] = (), ip: str = "") -> None:
        """Put a container (running or not) on a network, under its name and ``aliases``."""
        request = npb.ConnectNetworkRequest(
            network=network, container=container, aliases=list(aliases), ip=ip
        )
        unary(self._stub.Connect, request)

    def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        request = npb.DisconnectNetworkRequest(network=network, container=container, force=force)
        unary(self._stub.Disconnect, request)

    def prune(self) -> Pruned:
        """Remove every user network no container is on."""
        return Pruned(tuple(unary(self._stub.Prune, npb.PruneNetworksRequest()).deleted))


class Volumes:
    def __init__(self, channel: Any) -> None:
        self._stub = volumes_pb2_grpc.VolumesStub(channel)

    def create(
        self,
        name: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        driver: str = "",
        options: Mapping[str, str] | None = None,
    ) -> VolumeInfo:
        """A volume (named ``name``, or an anonymous one); one of that name that exists is returned
        as it is (docker's rule)."""
        request = vpb.CreateVolumeRequest(
            name=name, labels=dict(labels or {}), driver=driver, options=dict(options or {})
        )
        return VolumeInfo.from_pb(unary(self._stub.Create, request))

    def get(self, name: str) -> VolumeInfo:
        return VolumeInfo.from_pb(unary(self._stub.Inspect, vpb.InspectVolumeRequest(name=name)))

    def list(self, *, filters: Sequence[str] = ()) -> list[VolumeInfo]:
        """Volumes by name; ``filters`` as ``volume ls -f`` (dangling=, name=, label=, driver=)."""
        request = vpb.ListVolumesRequest(filters=list(filters))
        return [VolumeInfo.from_pb(v) for v in unary(self._stub.List, request).volumes]

    def remove(self, name: str, *, force: bool = False) -> None:
        unary(self._stub.Remove, vpb.RemoveVolumeRequest(name=name, force=force))

    def prune(self, *, filters: Sequence[str] = ()) -> Pruned:
        """Remove every volume no container uses, named ones too (filters: label=, label!=)."""
        reply = unary(self._stub.Prune, vpb.PruneVolumesRequest(filters=list(filters)))
        return Pruned(tuple(reply.deleted), reply.space_reclaimed)
