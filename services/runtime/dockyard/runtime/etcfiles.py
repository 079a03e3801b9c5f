"""The container's /etc/hosts, /etc/resolv.conf and /etc/hostname, written for its network.

Separate from the spec because it writes files (the bundle's ``etc/``, bind-mounted by
:func:`dockyard.runtime.ocispec.build_spec`) and knows the network's addresses, which the spec
does not; the spec shares only its hostname check (:func:`valid_hostname`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from dockyard.core.errors import InvalidArgument
from dockyard.runtime.passwd import MAX_ETC_FILE
from dockyard.runtime.runflags import NetworkMode, parse_network

#: slirp4netns's fixed addresses: the container, the host gateway, the DNS forwarder.
SLIRP_CONTAINER_IP = "10.0.2.100"
SLIRP_GATEWAY_IP = "10.0.2.2"
SLIRP_DNS_IP = "10.0.2.3"


class EtcFiles(NamedTuple):
    """Where :func:`etc_files` wrote the three files (unpacks as ``hosts, resolv, hostname``)."""

    hosts: Path
    resolv: Path
    hostname: Path


def valid_hostname(name: str) -> str:
    """``name`` if it is a hostname (letters, digits, "." and "-" inside, ≤ 254), else InvalidArgument."""
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", name):
        raise InvalidArgument(f"invalid hostname: {name!r}")
    return name


def _read_host_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(MAX_ETC_FILE).decode("utf-8", "replace")
    except OSError:
        return ""


def etc_files(
    directory: Path,
    hostname: str,
    network: NetworkMode | str,
    extra_hosts: Sequence[str] = (),
    dns: Sequence[str] = (),
    *,
    host_resolv: Path = Path("/etc/resolv.conf"),
    host_hosts: Path = Path("/etc/hosts"),
) -> EtcFiles:
    """Write the container's hosts, resolv.conf and hostname into ``directory`` (created).

    - hosts: with ``--network host`` the node's own plus the extra hosts; else localhost, docker's
      IPv6 names, the container's hostname on its address (slirp4netns: 10.0.2.100; none:
      127.0.0.1) and the extra hosts (``--add-host name:ip``; ``host-gateway`` is the host:
      10.0.2.2 under slirp4netns).
    - resolv.conf: ``--dns`` when given; else slirp4netns's forwarder 10.0.2.3, the node's own
      file with ``--network host``, and nothing with ``--network none``.
    """
    valid_hostname(hostname)
    network = parse_network(network)
    extra = []
    for entry in extra_hosts:
        name, sep, ip = entry.partition(":")
        if ip == "host-gateway":
            if network is not NetworkMode.SLIRP4NETNS:
                raise InvalidArgument(f"--add-host {entry}: host-gateway needs the slirp4netns network")
            ip = SLIRP_GATEWAY_IP
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
        if not sep or not name:
            raise InvalidArgument(f"bad format for add-host: {entry!r}")
        extra.append(f"{ip.strip('[]')}\t{valid_hostname(name)}\n")
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{server} is not an ip address") from None

    if network is NetworkMode.HOST:
        own = _read_host_file(host_hosts)
        hosts = own + ("" if not own or own.endswith("\n") else "\n") + "".join(extra)
    else:
        address = SLIRP_CONTAINER_IP if network is NetworkMode.SLIRP4NETNS else "127.0.0.1"
        hosts = (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "ff00::0\tip6-mcastprefix\n"
            "ff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n"
            f"{address}\t{hostname}\n"
        ) + "".join(extra)
    if dns:
        resolv = "".join(f"nameserver {s}\n" for s in dns)
    elif network is NetworkMode.SLIRP4NETNS:
        resolv = f"nameserver {SLIRP_DNS_IP}\n"
    elif network is NetworkMode.HOST:
        resolv = _read_host_file(host_resolv)
    else:
        resolv = ""

    directory.mkdir(parents=True, exist_ok=True)
    files = EtcFiles(directory / "hosts", directory / "resolv.conf", directory / "hostname")
    for path, text in ((files.hosts, hosts), (files.resolv, resolv), (files.hostname, hostname + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    return files
