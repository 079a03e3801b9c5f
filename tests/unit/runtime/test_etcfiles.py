"""dockyard.runtime.etcfiles: the container's hosts, resolv.conf and hostname for each network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.runtime.etcfiles import etc_files
from dockyard.runtime.runflags import NetworkMode

# --- etc files ---------------------------------------------------------------------------------------


def test_etc_files_for_slirp4netns(tmp_path: Path) -> None:
    files = etc_files(tmp_path / "etc", "web1", "slirp4netns", ["db:10.0.2.50", "host:host-gateway"])
    hosts, resolv, hostname = files  # unpacks as a tuple
    assert hosts.read_text().startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost")
    assert "10.0.2.100\tweb1\n" in hosts.read_text()
    assert hosts.read_text().endswith("10.0.2.50\tdb\n10.0.2.2\thost\n")
    assert resolv.read_text() == "nameserver 10.0.2.3\n"
    assert hostname.read_text() == "web1\n"
    assert oct(hosts.stat().st_mode & 0o777) == "0o644"


def test_etc_files_for_host_and_none(tmp_path: Path) -> None:
    (tmp_path / "h").write_text("127.0.0.1 localhost\n192.168.1.5 node1")
    (tmp_path / "r").write_text("nameserver 192.168.1.1\nsearch lan\n")
    host = etc_files(
        tmp_path / "a",
        "node1",
        NetworkMode.HOST,
        ["x:1.2.3.4"],
        host_resolv=tmp_path / "r",
        host_hosts=tmp_path / "h",
    )
    assert host.hosts.read_text() == "127.0.0.1 localhost\n192.168.1.5 node1\n1.2.3.4\tx\n"
    assert host.resolv.read_text() == "nameserver 192.168.1.1\nsearch lan\n"
    none = etc_files(tmp_path / "b", "c1", NetworkMode.NONE)
    assert "127.0.0.1\tc1\n" in none.hosts.read_text()
    assert none.resolv.read_text() == ""
    dns = etc_files(tmp_path / "c", "c1", NetworkMode.SLIRP4NETNS, dns=["1.1.1.1", "9.9.9.9"])
    assert dns.resolv.read_text() == "nameserver 1.1.1.1\nnameserver 9.9.9.9\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hostname": "bad host"}, "invalid hostname"),
        ({"extra_hosts": ["db"]}, "invalid IP address in add-host"),
        ({"extra_hosts": ["db:999.1.1.1"]}, "invalid IP address"),
        ({"extra_hosts": [":1.2.3.4"]}, "bad format for add-host"),
        ({"extra_hosts": ["h:host-gateway"], "network": "none"}, "host-gateway needs"),
        ({"dns": ["dns.example"]}, "is not an ip address"),
    ],
)
def test_etc_files_errors(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"hostname": "c1", "network": "slirp4netns", **kwargs}
    with pytest.raises(InvalidArgument, match=message):
        etc_files(tmp_path, **args)


# --- seccomp -----------------------------------------------------------------------------------------
