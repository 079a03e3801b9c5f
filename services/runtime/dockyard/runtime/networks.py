"""User-defined bridge networks: records, address allocation, endpoints, names. No gRPC in here.

A network is a bridge in the node network namespace (:mod:`dockyard.runtime.netns`) with a subnet
and a gateway. A container joins it with an *endpoint*: an address of that subnet, its aliases and
an interface (``eth0``, ``eth1``… in the order joined). Endpoints belong to the container for its
whole life (its address stays the same across stop/start, like podman's), are kept in a file per
container, and are wired (veth + address + routes) each time the container's namespace exists: at
start (``attach``), on ``network connect`` of a running container, and undone on ``disconnect``.

**Name resolution is /etc/hosts, kept current**, not a DNS server. Each container's hosts file
lists every *running* container sharing a network with it, by name and by its aliases on that
network. It is rewritten in place (the file is bind-mounted, its inode must stay) whenever a
container on one of its networks starts, stops, connects, disconnects, is renamed or removed.
Why: nothing has to run for names to resolve — a ``kill -9`` of the runtime cannot take name
resolution down, and there is no daemon to restart or keep consistent; a lookup costs no network
round trip; busybox's static libc and any other resolver read /etc/hosts first. The price: names
are not in DNS (``nslookup db`` asks slirp4netns' resolver and fails; ``getent``/``ping``/``wget``
work), and a program that reads /etc/hosts once keeps an old view. resolv.conf points at
slirp4netns' forwarder (10.0.2.3, reached through the node namespace) unless ``--dns`` is given.

Addresses: ``--subnet`` (IPv4, /8 to /30, no host bits) and ``--gateway`` (inside it, not its
network or broadcast address; default: the first host) are validated; a subnet may not overlap
another network's or slirp4netns' 10.0.2.0/24. Without ``--subnet`` the first free 10.89.N.0/24
is taken. A container's address is ``--ip`` (checked: inside, free, not the gateway) or the lowest
free host address.

Layout::

    <state>/networks/
      nets/<id>.json         a Network record
      endpoints/<cid>.json   a container's endpoints, hosts-file inputs, its port forwarder's pid
      netns.pid slirp.pid slirp.sock   (dockyard.runtime.netns)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from dockyard.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dockyard.core.events import Publisher, Subject, new_event
from dockyard.runtime import outliving, portfwd
from dockyard.runtime.netns import SLIRP_DNS, SLIRP_GATEWAY, SLIRP_SUBNET, Bridge, NodeNetns

log = structlog.get_logger(__name__)

BUILTIN = {"none": "null", "host": "host", "bridge": "slirp4netns"}
#: Names ``--network`` gives the built-in modes (bridge/default/slirp mean slirp4netns).
BUILTIN_MODES = {"none", "host", "slirp4netns", "bridge", "default", "slirp", ""}
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
AUTO_POOL = ipaddress.ip_network("10.89.0.0/16")
SLIRP_CONTAINER_IP = "10.0.2.100"
FORWARDER_READY_S = 10.0


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Network:
    """One user network, as stored in nets/<id>.json."""

    id: str
    name: str
    subnet: str
    gateway: str
    index: int
    created: str
    labels: dict[str, str] = field(default_factory=dict)
    driver: str = "bridge"

    @property
    def bridge(self) -> Bridge:
        return Bridge(self.index, self.subnet, self.gateway)


@dataclass(frozen=True, slots=True)
class Endpoint:
    network_id: str
    ip: str
    aliases: list[str] = field(default_factory=list)
    ifname: str = "eth0"


@dataclass(frozen=True, slots=True)
class Attachment:
    """An endpoint as a caller sees it (inspect)."""

    network: str
    network_id: str
    ip: str
    prefix_len: int
    gateway: str
    aliases: list[str]
    ifname: str


class ContainerView(Protocol):
    """What the network core reads of a container record."""

    id: str
    name: str
    pid: int
    ports: Sequence[Any]

    @property
    def state(self) -> Any: ...

    @property
    def config(self) -> Any: ...


class ContainerLookup(Protocol):
    def get(self, ref: str) -> Any: ...

    def list_containers(self, all: bool = False) -> list[Any]: ...


def _running(record: Any) -> bool:
    return str(record.state) in ("running", "paused") and record.pid > 0


def is_user_network(mode: str) -> bool:
    return mode not in BUILTIN_MODES


def _validate_hosts_and_dns(extra_hosts: Sequence[str], dns: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for entry in extra_hosts:
        name, sep, ip = entry.partition(":")
        if not sep or not name:
            raise InvalidArgument(f"bad --add-host {entry!r}: expected NAME:IP")
        if ip == "host-gateway":
            ip = SLIRP_GATEWAY
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise InvalidArgument(f"bad --add-host {entry!r}: {ip!r} is not an IP address") from None
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", name):
            raise InvalidArgument(f"bad --add-host {entry!r}: invalid host name {name!r}")
        out.append((name, ip.strip("[]")))
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"bad --dns {server!r}: not an IP address") from None
    return out


def _write_in_place(path: Path, text: str) -> None:
    """Rewrite ``path`` keeping its inode (a running container has it bind-mounted)."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)


def _parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits" in str(exc):
            raise InvalidArgument(
                f"invalid --subnet {text}: host bits are set (did you mean "
                f"{ipaddress.ip_network(text, strict=False)}?)"
            ) from None
        raise InvalidArgument(
            f"invalid --subnet {text!r}: expected an IPv4 CIDR such as 10.90.0.0/24"
        ) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid --subnet {text}: only IPv4 subnets are supported")
    if not 8 <= net.prefixlen <= 30:
        raise InvalidArgument(f"invalid --subnet {text}: the prefix length must be between /8 and /30")
    return net


class NetworkManager:
    """Create, list, remove user networks; connect containers; keep their hosts files current."""

    def __init__(self, root: Path, publisher: Publisher, source: str, netns: NodeNetns | None = None) -> None:
        self.root = root
        self.publisher = publisher
        self.source = source
        self.netns = netns or NodeNetns(root)
        self.containers: ContainerLookup | None = None
        self._lock = asyncio.Lock()
        self._nets: dict[str, Network] = {}
        self._up: set[str] = set()  # attached, not yet recorded as running
        (root / "nets").mkdir(parents=True, exist_ok=True)
        (root / "endpoints").mkdir(parents=True, exist_ok=True)
        for f in sorted((root / "nets").glob("*.json")):
            try:
                net = Network(**json.loads(f.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("unreadable network record", file=str(f), error=str(exc))
                continue
            self._nets[net.id] = net

    def bind(self, containers: ContainerLookup) -> None:
        self.containers = containers

    # --- records ------------------------------------------------------------------------------------

    def _save_net(self, net: Network) -> None:
        tmp = self.root / "nets" / f"{net.id}.json.tmp"
        tmp.write_text(json.dumps(asdict(net), indent=1))
        tmp.replace(self.root / "nets" / f"{net.id}.json")

    def _ep_file(self, cid: str) -> Path:
        return self.root / "endpoints" / f"{cid}.json"

    def _load_eps(self, cid: str) -> dict[str, Any]:
        try:
            d: dict[str, Any] = json.loads(self._ep_file(cid).read_text())
        except (OSError, ValueError):
            return {"endpoints": [], "etc": ""}
        d["endpoints"] = [Endpoint(**e) for e in d.get("endpoints", [])]
        return d

    def _endpoints(self, cid: str) -> list[Endpoint]:
        eps: list[Endpoint] = self._load_eps(cid)["endpoints"]
        return eps

    def _save_eps(self, cid: str, endpoints: list[Endpoint], **extra: Any) -> None:
        d = self._load_eps(cid)
        d.update(extra)
        d["endpoints"] = [asdict(e) for e in endpoints]
        tmp = self._ep_file(cid).with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=1))
        tmp.replace(self._ep_file(cid))

    def _all_eps(self) -> dict[str, list[Endpoint]]:
        out = {}
        for f in (self.root / "endpoints").glob("*.json"):
            out[f.stem] = self._endpoints(f.stem)
        return out

    def _emit(self, subject: Subject, net: Network, **data: Any) -> None:
        payload = {"id": net.id, "name": net.name, **data}
        self.publisher.publish(new_event(subject, self.source, net.id, payload))

    def find(self, ref: str) -> Network:
        """By name, full id or unique id prefix."""
        if not ref:
            raise InvalidArgument("a network name or id is required")
        if ref in BUILTIN:
            raise InvalidArgument(f"{ref} is a built-in network mode, not a user network")
        for net in self._nets.values():
            if net.name == ref or net.id == ref:
                return net
        matches = [n for n in self._nets.values() if n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"ambiguous network id prefix {ref!r}: {len(matches)} networks match")
        raise NotFound(f"no such network: {ref}")

    def list_networks(self) -> list[Network]:
        return sorted(self._nets.values(), key=lambda n: n.created)

    def users(self, net: Network) -> list[tuple[str, Endpoint]]:
        """(container id, endpoint) of every container on ``net``, running or not."""
        return [(cid, e) for cid, eps in self._all_eps().items() for e in eps if e.network_id == net.id]

    def _name_of(self, cid: str) -> str:
        if self.containers is not None:
            with contextlib.suppress(Exception):
                return str(self.containers.get(cid).name)
        return cid[:12]

    # --- create / remove ----------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        subnet: str = "",
        gateway: str = "",
        labels: dict[str, str] | None = None,
        driver: str = "",
    ) -> Network:
        if driver not in ("", "bridge"):
            raise InvalidArgument(f"network driver {driver!r} is not supported: use bridge")
        if not NAME_RE.match(name or ""):
            raise InvalidArgument(
                f"invalid network name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 63)"
            )
        if name in BUILTIN or not is_user_network(name):
            raise InvalidArgument(f"{name} is a built-in network mode: choose another name")
        if gateway and not subnet:
            raise InvalidArgument("--gateway needs --subnet")
        async with self._lock:
            if any(n.name == name for n in self._nets.values()):
                raise AlreadyExists(f"network {name} already exists")
            taken = [ipaddress.ip_network(n.subnet) for n in self._nets.values()]
            taken.append(ipaddress.ip_network(SLIRP_SUBNET))
            if subnet:
                net = _parse_subnet(subnet)
                for other in self._nets.values():
                    if net.overlaps(ipaddress.ip_network(other.subnet)):
                        raise InvalidArgument(f"subnet {net} overlaps network {other.name}'s {other.subnet}")
                if net.overlaps(ipaddress.ip_network(SLIRP_SUBNET)):
                    raise InvalidArgument(f"subnet {net} overlaps slirp4netns' {SLIRP_SUBNET}")
            else:
                net = next(
                    (s for s in AUTO_POOL.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken)),
                    None,
                )  # type: ignore[assignment]
                if net is None:
                    raise FailedPrecondition(
                        f"no free /24 left in {AUTO_POOL}: remove networks or give --subnet"
                    )
            hosts = (net.network_address + 1, net.broadcast_address - 1)
            if gateway:
                try:
                    gw = ipaddress.ip_address(gateway)
                except ValueError:
                    raise InvalidArgument(f"invalid --gateway {gateway!r}: not an IP address") from None
                if gw not in net or gw in (net.network_address, net.broadcast_address):
                    raise InvalidArgument(f"--gateway {gateway} is not a host address of {net}")
            else:
                gw = hosts[0]
            used = {n.index for n in self._nets.values()}
            index = next(i for i in range(1, 4096) if i not in used)
            record = Network(
                id=secrets.token_hex(32),
                name=name,
                subnet=str(net),
                gateway=str(gw),
                index=index,
                created=now(),
                labels=dict(labels or {}),
            )
            await asyncio.to_thread(self._make_bridge, record)
            self._save_net(record)
            self._nets[record.id] = record
        self._emit(Subject.NETWORK_CREATED, record, subnet=record.subnet, gateway=record.gateway)
        return record

    def _make_bridge(self, net: Network) -> None:
        """Blocking: the namespace (re-made with every bridge if it was gone), then this bridge."""
        if self.netns.ensure():
            self._rebuild_locked()
        others = [n.bridge for n in self._nets.values() if n.id != net.id]
        self.netns.add_bridge(net.bridge, others)

    def _rebuild_locked(self) -> None:
        done: list[Bridge] = []
        for n in self._nets.values():
            self.netns.add_bridge(n.bridge, done)
            done.append(n.bridge)

    async def ensure_ready(self) -> None:
        """At service start: if networks exist, make sure their namespace and bridges do."""
        if self._nets:
            async with self._lock:
                await asyncio.to_thread(self._ensure_blocking)

    def _ensure_blocking(self) -> None:
        if self.netns.ensure():
            self._rebuild_locked()

    async def start(self) -> None:
        """Service component: at start-up, the namespace and bridges of existing networks."""
        await self.ensure_ready()

    async def stop(self) -> None:
        """Service component: nothing to do (the namespace outlives the service by design)."""

    async def remove(self, ref: str) -> Network:
        async with self._lock:
            net = self.find(ref)
            users = sorted(self._name_of(cid) for cid, _ in self.users(net))
            if users:
                raise FailedPrecondition(
                    f"network {net.name} is in use by container{'s' if len(users) > 1 else ''} "
                    f"{', '.join(users)}: remove or disconnect them first"
                )
            others = [n.bridge for n in self._nets.values() if n.id != net.id]
            if self.netns.holder() is not None:
                await asyncio.to_thread(self.netns.remove_bridge, net.bridge, others)
            (self.root / "nets" / f"{net.id}.json").unlink(missing_ok=True)
            del self._nets[net.id]
            if not self._nets:
                await asyncio.to_thread(self.netns.destroy)
        self._emit(Subject.NETWORK_REMOVED, net)
        return net

    async def prune(self) -> list[str]:
        removed = []
        for net in self.list_networks():
            if not self.users(net):
                with contextlib.suppress(NotFound, FailedPrecondition):
                    await self.remove(net.id)
                    removed.append(net.name)
        return removed

    # --- what the container core calls ------------------------------------------------------------------

    def validate(self, config: Any) -> None:
        """Check a container's network flags at create (one clear line each)."""
        _validate_hosts_and_dns(config.extra_hosts, config.dns)
        mode = config.network
        if not is_user_network(mode):
            if config.ip:
                raise InvalidArgument("--ip needs a user-defined network (docker network create)")
            if config.network_aliases:
                raise InvalidArgument("--network-alias needs a user-defined network")
            return
        net = self.find(mode)
        for alias in config.network_aliases:
            if not NAME_RE.match(alias):
                raise InvalidArgument(f"invalid --network-alias {alias!r}")
        if config.ip:
            self._check_ip(net, config.ip)
        for port in config.ports:
            if port.protocol == "sctp":
                raise InvalidArgument(
                    f"cannot publish {port.container_port}/sctp on network {net.name}: "
                    "sctp is not supported there"
                )

    def _check_ip(self, net: Network, ip: str, exclude: str = "") -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid --ip {ip!r}: not an IP address") from None
        subnet = ipaddress.ip_network(net.subnet)
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"--ip {ip} is not a host address of network {net.name} ({net.subnet})")
        if str(addr) == net.gateway:
            raise InvalidArgument(f"--ip {ip} is network {net.name}'s gateway")
        for cid, e in self.users(net):
            if e.ip == str(addr) and cid != exclude:
                raise AlreadyExists(
                    f"--ip {ip} is already used by container {self._name_of(cid)} on {net.name}"
                )
        return str(addr)

    def _allocate(self, net: Network, ip: str, cid: str) -> str:
        if ip:
            return self._check_ip(net, ip, exclude=cid)
        used = {e.ip for _, e in self.users(net)} | {net.gateway}
        for host in ipaddress.ip_network(net.subnet).hosts():
            if str(host) not in used:
                return str(host)
        raise FailedPrecondition(f"network {net.name} ({net.subnet}) has no free address left")

    async def reserve(self, record: Any) -> None:
        """At create: an endpoint on the container's user network (if it is on one)."""
        config = record.config
        if not is_user_network(config.network):
            return
        async with self._lock:
            net = self.find(config.network)
            ip = self._allocate(net, config.ip, record.id)
            self._save_eps(record.id, [Endpoint(net.id, ip, list(config.network_aliases), "eth0")])

    async def release(self, cid: str) -> None:
        """At remove: forget the container's endpoints; the peers' hosts lose it."""
        self._stop_forwarder(cid)
        peers = self._peers(cid)
        self._ep_file(cid).unlink(missing_ok=True)
        await self._refresh(peers)

    def is_user_network(self, mode: str) -> bool:
        return is_user_network(mode)

    def etc_files(self, record: Any, etc: Path, hostname: str) -> tuple[Path, Path, Path]:
        """Write hosts, resolv.conf and hostname of a container on a user network (blocking)."""
        etc.mkdir(parents=True, exist_ok=True)
        self._save_eps(record.id, self._endpoints(record.id), etc=str(etc), hostname=hostname)
        hosts, resolv, hostname_file = etc / "hosts", etc / "resolv.conf", etc / "hostname"
        _write_in_place(hosts, self._hosts_text(record.id))
        dns = list(record.config.dns) or [SLIRP_DNS]
        _write_in_place(resolv, "".join(f"nameserver {s}\n" for s in dns))
        _write_in_place(hostname_file, hostname + "\n")
        return hosts, resolv, hostname_file

    def _hosts_text(self, cid: str) -> str:
        d = self._load_eps(cid)
        eps: list[Endpoint] = d["endpoints"]
        record = None
        if self.containers is not None:
            with contextlib.suppress(Exception):
                record = self.containers.get(cid)
        hostname = d.get("hostname") or cid[:12]
        name = record.name if record is not None else ""
        extra = _validate_hosts_and_dns(record.config.extra_hosts, ()) if record is not None else []
        own_ip = eps[0].ip if eps and record is not None and is_user_network(record.config.network) else ""
        own_ip = own_ip or SLIRP_CONTAINER_IP
        own_names = [hostname] + [n for n in [name, *(eps[0].aliases if eps else [])] if n and n != hostname]
        lines = [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            "fe00::0\tip6-localnet",
            "ff00::0\tip6-mcastprefix",
            "ff02::1\tip6-allnodes",
            "ff02::2\tip6-allrouters",
            f"{own_ip}\t{' '.join(own_names)}",
        ]
        mine = {e.network_id for e in eps}
        running = {}
        if self.containers is not None:
            running = {
                r.id: r for r in self.containers.list_containers(all=True) if _running(r) or r.id in self._up
            }
        for other, other_eps in sorted(self._all_eps().items()):
            peer = running.get(other)
            if other == cid or peer is None:
                continue
            for e in other_eps:
                if e.network_id in mine:
                    names = [peer.name, *[a for a in e.aliases if a != peer.name]]
                    lines.append(f"{e.ip}\t{' '.join(names)}")
        lines += [f"{ip}\t{host}" for host, ip in extra]
        return "\n".join(lines) + "\n"

    def _peers(self, cid: str) -> set[str]:
        """Containers sharing a network with ``cid`` (whose hosts files name it)."""
        mine = {e.network_id for e in self._endpoints(cid)}
        return {
            other
            for other, eps in self._all_eps().items()
            if other != cid and any(e.network_id in mine for e in eps)
        }

    async def _refresh(self, cids: set[str]) -> None:
        """Rewrite the hosts file of each container in ``cids`` that has one."""
        for cid in cids:
            etc = self._load_eps(cid).get("etc")
            if etc:
                with contextlib.suppress(OSError):  # not started yet: its bundle writes it
                    await asyncio.to_thread(_write_in_place, Path(etc) / "hosts", self._hosts_text(cid))

    async def attach(self, record: Any, pid: int) -> None:
        """At start (after ``runc create``): wire every endpoint, forward ports, tell the peers."""
        eps = self._endpoints(record.id)
        if not eps:
            return
        user_primary = is_user_network(record.config.network)
        async with self._lock:
            await asyncio.to_thread(self._ensure_blocking)
            for i, e in enumerate(eps):
                net = self._nets.get(e.network_id)
                if net is None:
                    raise FailedPrecondition(f"container {record.name}'s network {e.network_id[:12]} is gone")
                await asyncio.to_thread(
                    self.netns.attach,
                    net.bridge,
                    record.id,
                    pid,
                    e.ifname,
                    e.ip,
                    default_route=user_primary and i == 0,
                )
        self._up.add(record.id)
        if user_primary and record.ports:
            await self._start_forwarder(record, eps[0].ip)
        await self._refresh(self._peers(record.id) | {record.id})

    async def readopt(self, record: Any) -> None:
        """For a container adopted from a previous service: its port forwarder again if it is gone."""
        eps = self._endpoints(record.id)
        if (
            eps
            and is_user_network(record.config.network)
            and record.ports
            and not self._forwarder_running(record.id)
        ):
            await self._start_forwarder(record, eps[0].ip)

    def _forwarder_running(self, cid: str) -> bool:
        return outliving.running(self._fwd_pid_file(cid), "portfwd") is not None

    async def detach(self, record: Any) -> None:
        """At exit: the veths went with the container's namespace; stop its forwarder, tell the peers."""
        self._stop_forwarder(record.id)
        self._up.discard(record.id)
        await self._refresh(self._peers(record.id))

    def container_ip(self, record: Any) -> str:
        eps = self._endpoints(record.id)
        return eps[0].ip if eps and is_user_network(record.config.network) else ""

    def attachments(self, cid: str) -> list[Attachment]:
        out = []
        for e in self._endpoints(cid):
            net = self._nets.get(e.network_id)
            if net is not None:
                out.append(
                    Attachment(
                        net.name, net.id, e.ip, net.bridge.prefix, net.gateway, list(e.aliases), e.ifname
                    )
                )
        return out

    # --- connect / disconnect -------------------------------------------------------------------------

    def _container(self, ref: str) -> Any:
        if self.containers is None:
            raise FailedPrecondition("networks are not bound to the container manager")
        return self.containers.get(ref)

    async def connect(
        self, ref: str, container: str, aliases: Sequence[str] = (), ip: str = ""
    ) -> Attachment:
        record = self._container(container)
        if record.config.network in ("none", "host"):
            raise FailedPrecondition(
                f"container {record.name} uses --network {record.config.network}: "
                "it cannot join other networks"
            )
        for alias in aliases:
            if not NAME_RE.match(alias):
                raise InvalidArgument(f"invalid --alias {alias!r}")
        async with self._lock:
            net = self.find(ref)
            eps = self._endpoints(record.id)
            if any(e.network_id == net.id for e in eps):
                raise AlreadyExists(f"container {record.name} is already connected to network {net.name}")
            address = self._allocate(net, ip, record.id)
            used = {e.ifname for e in eps}
            ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
            endpoint = Endpoint(net.id, address, list(aliases), ifname)
            if _running(record):
                await asyncio.to_thread(self._ensure_blocking)
                default = is_user_network(record.config.network) and not eps
                await asyncio.to_thread(
                    self.netns.attach,
                    net.bridge,
                    record.id,
                    record.pid,
                    ifname,
                    address,
                    default_route=default,
                )
            self._save_eps(record.id, [*eps, endpoint])
        await self._refresh(self._peers(record.id) | {record.id})
        self._emit(Subject.NETWORK_CONNECTED, net, container=record.id, containerName=record.name, ip=address)
        return self.attachments(record.id)[-1]

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        record = self._container(container)
        async with self._lock:
            net = self.find(ref)
            eps = self._endpoints(record.id)
            gone = [e for e in eps if e.network_id == net.id]
            if not gone:
                raise NotFound(f"container {record.name} is not connected to network {net.name}")
            before = self._peers(record.id)
            rest = [e for e in eps if e.network_id != net.id]
            if _running(record):
                await asyncio.to_thread(self.netns.detach, net.bridge, record.id)
                if gone[0] is eps[0] and rest and is_user_network(record.config.network):
                    first = self._nets.get(rest[0].network_id)
                    if first is not None:
                        await asyncio.to_thread(
                            self.netns.set_default_route, record.pid, first.bridge, rest[0].ifname
                        )
            self._save_eps(record.id, rest)
        await self._refresh(before | {record.id})
        self._emit(Subject.NETWORK_DISCONNECTED, net, container=record.id, containerName=record.name)

    async def renamed(self, cid: str) -> None:
        await self._refresh(self._peers(cid) | {cid})

    # --- port forwarder -------------------------------------------------------------------------------

    def _fwd_pid_file(self, cid: str) -> Path:
        return self.root / "endpoints" / f"{cid}.portfwd.pid"

    async def _start_forwarder(self, record: Any, ip: str) -> None:
        self._stop_forwarder(record.id)
        forwards = [
            f"{p.protocol}:{p.host_ip or '0.0.0.0'}:{p.host_port}:{ip}:{p.container_port}"
            for p in record.ports
        ]
        ready_r, ready_w = os.pipe()
        argv = [
            sys.executable,
            "-I",
            portfwd.__file__,
            "--netns",
            self.netns.path,
            "--ready-fd",
            str(ready_w),
        ]
        try:
            pid = await asyncio.to_thread(outliving.start, [*argv, *forwards], pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
        self._fwd_pid_file(record.id).write_text(str(pid))
        try:
            reply = await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 512), FORWARDER_READY_S)
        except TimeoutError:
            reply = b"0timed out"
        finally:
            os.close(ready_r)
        if reply != b"1":
            self._stop_forwarder(record.id)
            reason = reply[1:].decode(errors="replace") or "it exited"
            if "in use" in reason:
                raise InvalidArgument(f"cannot publish ports of {record.name}: {reason} (host port taken)")
            raise FailedPrecondition(f"cannot publish ports of {record.name}: {reason}")

    def _stop_forwarder(self, cid: str) -> None:
        f = self._fwd_pid_file(cid)
        try:
            pid = int(f.read_text())
            with open(f"/proc/{pid}/cmdline", "rb") as c:
                if b"portfwd" in c.read():
                    os.kill(pid, signal.SIGTERM)
                    _wait_gone(pid)  # its host ports are free when rm/stop returns, as docker's
        except (OSError, ValueError):
            pass
        f.unlink(missing_ok=True)


def _wait_gone(pid: int, limit_s: float = 1.0) -> None:
    """Until ``pid`` has exited (a zombie counts: it holds no sockets), at most ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.002)


class NoNetworks:
    """The node without user networks (the runtime was made without a NetworkManager): every
    container is on slirp4netns, host or none, so there is nothing to reserve, attach or release,
    and a user network's name is refused at create. Stands where the manager would, so the
    lifecycle never asks whether there are networks."""

    def validate(self, config: Any) -> None:
        from dockyard.runtime.runflags import parse_network

        parse_network(config.network)

    async def reserve(self, record: Any) -> None:
        return None

    async def release(self, cid: str) -> None:
        return None

    async def attach(self, record: Any, pid: int) -> None:
        return None

    async def readopt(self, record: Any) -> None:
        return None

    async def detach(self, record: Any) -> None:
        return None

    async def renamed(self, cid: str) -> None:
        return None

    def attachments(self, cid: str) -> list[Attachment]:
        return []

    def etc_files(self, record: Any, etc: Path, hostname: str) -> tuple[Path, Path, Path]:
        raise NotFound(f"network {record.config.network!r} not found")  # validate refused it first

    def container_ip(self, record: Any) -> str:
        raise NotFound(f"network {record.config.network!r} not found")
