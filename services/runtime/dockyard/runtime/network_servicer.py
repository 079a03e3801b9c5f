"""gRPC servicer of user networks (dockyard.api.networks.v1), and the network part of a Container message.

Parse, call one NetworkManager method, convert back; core errors become status codes in the
ErrorInterceptor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.api.networks.v1 import networks_pb2 as npb
from dockyard.api.networks.v1 import networks_pb2_grpc
from dockyard.runtime.networks import BUILTIN, Network, NetworkManager, NoNetworks, is_user_network

#: docker's three built-in networks, as `network ls` shows them (bridge is slirp4netns here).
_BUILTIN_ROWS = (
    ("bridge", "slirp4netns", "10.0.2.0/24", "10.0.2.2"),
    ("host", "host", "", ""),
    ("none", "null", "", ""),
)


def add_networks_pb(
    msg: cpb.Container, record: Any, networks: NetworkManager | NoNetworks, ip: str
) -> cpb.Container:
    """Fill a Container message's network fields (spec flags, attachments, address)."""
    c = record.config
    msg.spec.dns.extend(c.dns)
    msg.spec.extra_hosts.extend(c.extra_hosts)
    msg.spec.network_aliases.extend(c.network_aliases)
    msg.spec.ip = c.ip
    msg.ip_address = ip
    for a in networks.attachments(record.id):
        msg.networks.add(
            network=a.network,
            network_id=a.network_id,
            ip=a.ip,
            prefix_len=a.prefix_len,
            gateway=a.gateway,
            aliases=a.aliases,
            interface=a.ifname,
        )
    return msg


class NetworksServicer(networks_pb2_grpc.NetworksServicer):
    def __init__(self, networks: NetworkManager, node: str) -> None:
        self.n = networks
        self.node = node

    def _pb(self, net: Network) -> npb.Network:
        msg = npb.Network(
            id=net.id,
            name=net.name,
            driver=net.driver,
            subnet=net.subnet,
            gateway=net.gateway,
            labels=net.labels,
            bridge=net.bridge.name,
            node=self.node,
        )
        msg.created.FromDatetime(datetime.fromisoformat(net.created))
        running = set()
        names: dict[str, str] = {}
        if self.n.containers is not None:
            for r in self.n.containers.list_containers(all=True):
                names[r.id] = r.name
                if str(r.state) in ("running", "paused"):
                    running.add(r.id)
        for cid, e in sorted(self.n.users(net), key=lambda u: u[1].ip):
            msg.containers.add(
                container_id=cid,
                container_name=names.get(cid, ""),
                ip=e.ip,
                prefix_len=net.bridge.prefix,
                aliases=e.aliases,
                interface=e.ifname,
                running=cid in running,
            )
        return msg

    async def Create(self, request: npb.CreateNetworkRequest, context: Any) -> npb.Network:
        net = await self.n.create(
            request.name, request.subnet, request.gateway, dict(request.labels), request.driver
        )
        return self._pb(net)

    async def List(self, request: npb.ListNetworksRequest, context: Any) -> npb.ListNetworksResponse:
        rows = [
            npb.Network(
                id=name, name=name, driver=driver, subnet=subnet, gateway=gw, builtin=True, node=self.node
            )
            for name, driver, subnet, gw in _BUILTIN_ROWS
        ]
        rows += [self._pb(n) for n in self.n.list_networks()]
        return npb.ListNetworksResponse(networks=rows)

    async def Inspect(self, request: npb.InspectNetworkRequest, context: Any) -> npb.Network:
        for name, driver, subnet, gw in _BUILTIN_ROWS:
            if request.id == name and name in BUILTIN:
                return npb.Network(
                    id=name, name=name, driver=driver, subnet=subnet, gateway=gw, builtin=True, node=self.node
                )
        return self._pb(self.n.find(request.id))

    async def Remove(self, request: npb.RemoveNetworkRequest, context: Any) -> npb.RemoveNetworkResponse:
        await self.n.remove(request.id)
        return npb.RemoveNetworkResponse()

    async def Connect(self, request: npb.ConnectNetworkRequest, context: Any) -> npb.NetworkEndpoint:
        a = await self.n.connect(request.network, request.container, list(request.aliases), request.ip)
        return npb.NetworkEndpoint(
            container_name=request.container,
            ip=a.ip,
            prefix_len=a.prefix_len,
            aliases=a.aliases,
            interface=a.ifname,
        )

    async def Disconnect(
        self, request: npb.DisconnectNetworkRequest, context: Any
    ) -> npb.DisconnectNetworkResponse:
        await self.n.disconnect(request.network, request.container, request.force)
        return npb.DisconnectNetworkResponse()

    async def Prune(self, request: npb.PruneNetworksRequest, context: Any) -> npb.PruneNetworksResponse:
        return npb.PruneNetworksResponse(deleted=await self.n.prune())


__all__ = ["NetworksServicer", "add_networks_pb", "is_user_network"]
