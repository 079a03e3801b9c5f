"""End to end: user-defined bridge networks through the CLI, the gateway and `dockyard up`, as the
unprivileged user — names, aliases, isolation, connect/disconnect, -p, outbound, rm refusal.

One platform for the module; each test names its own networks and containers.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import Platform, busybox_platform, make_workdir

from dockyard.adapters.nats.server import free_port

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/var/www"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("networks-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


def _wget(platform: Platform, container: str, url: str) -> subprocess.CompletedProcess[str]:
    """busybox wget inside ``container`` (its -T crashes in Debian's static build: timeout(1) instead)."""
    return platform.cli("exec", container, "timeout", "10", "wget", "-q", "-O", "-", url, timeout=60)


def _inspect(platform: Platform, name: str) -> dict:  # type: ignore[type-arg]
    out: dict = json.loads(platform.ok("inspect", name))[0]  # type: ignore[type-arg]
    return out


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: bytes = reply.read()
        return body


def test_create_validates_and_lists(platform: Platform) -> None:
    for args, needle in (
        (("--subnet", "10.90.5.1/24"), "host bits"),
        (("--subnet", "10.90.5.0/33"), "--subnet"),
        (("--subnet", "nonsense"), "--subnet"),
        (("--subnet", "10.90.5.0/24", "--gateway", "10.91.0.1"), "not a host address"),
        (("--subnet", "10.0.2.0/24"), "overlaps"),
        (("--gateway", "10.90.0.1"), "--gateway needs --subnet"),
    ):
        done = platform.cli("network", "create", *args, "badnet")
        assert done.returncode != 0, args
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, done.stderr)
    assert "built-in" in platform.cli("network", "create", "host").stderr

    platform.ok("network", "create", "--subnet", "10.90.5.0/24", "--gateway", "10.90.5.254", "fixed")
    done = platform.cli("network", "create", "--subnet", "10.90.0.0/16", "overlapping")
    assert done.returncode != 0 and "overlaps network fixed" in done.stderr
    assert "already exists" in platform.cli("network", "create", "fixed").stderr
    platform.ok("network", "create", "auto1")
    platform.ok("network", "create", "auto2")
    rows = {line.split()[1]: line.split() for line in platform.ok("network", "ls").splitlines()[1:]}
    assert {"bridge", "host", "none", "fixed", "auto1", "auto2"} <= set(rows)
    assert rows["fixed"][3:] == ["10.90.5.0/24", "10.90.5.254"]
    assert rows["auto1"][3] != rows["auto2"][3]  # allocated without overlap
    info = json.loads(platform.ok("network", "inspect", "fixed"))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.90.5.0/24", "Gateway": "10.90.5.254"}]
    platform.ok("network", "rm", "auto1", "auto2", "fixed")
    assert "no such network" in platform.cli("network", "inspect", "fixed").stderr


def test_names_aliases_isolation_and_rm_refusal(platform: Platform) -> None:
    platform.ok("network", "create", "appnet")
    platform.ok("network", "create", "othernet")
    platform.ok(
        "run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www", "busybox", *HTTPD
    )
    platform.ok("run", "-d", "--name", "client", "--network", "appnet", "busybox", "sleep", "600")
    platform.ok("run", "-d", "--name", "stranger", "--network", "othernet", "busybox", "sleep", "600")

    # same network: by name and by alias
    assert _wget(platform, "client", "http://web/index.html").stdout == "hello from dockyard\n"
    assert _wget(platform, "client", "http://www/index.html").stdout == "hello from dockyard\n"
    web_ip = _inspect(platform, "web")["networks"][0]["ip"]
    assert _inspect(platform, "web")["ipAddress"] == web_ip

    # another network: neither the name nor the address
    assert _wget(platform, "stranger", "http://web/index.html").returncode != 0
    blocked = _wget(platform, "stranger", f"http://{web_ip}/index.html")
    assert blocked.returncode != 0 and "hello" not in blocked.stdout

    # rm is refused while a container is on the network, naming it
    done = platform.cli("network", "rm", "appnet")
    assert done.returncode != 0
    assert "in use" in done.stderr and "web" in done.stderr and "client" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    # a stopped peer leaves the others' hosts files; a started one comes back, same address
    platform.ok("stop", "-t", "0", "web")
    assert "web" not in platform.ok("exec", "client", "cat", "/etc/hosts")
    platform.ok("start", "web")
    assert _inspect(platform, "web")["networks"][0]["ip"] == web_ip
    assert f"{web_ip}\tweb www" in platform.ok("exec", "client", "cat", "/etc/hosts")
    got = _wget(platform, "client", "http://web/index.html")
    assert got.stdout == "hello from dockyard\n", got.stderr

    # connect: the stranger joins appnet while running, reaches web by name; disconnect undoes it
    platform.ok("network", "connect", "--alias", "visitor", "appnet", "stranger")
    assert _wget(platform, "stranger", "http://web/index.html").stdout == "hello from dockyard\n"
    assert "visitor" in platform.ok("exec", "web", "cat", "/etc/hosts")
    names = {n["network"] for n in _inspect(platform, "stranger")["networks"]}
    assert names == {"othernet", "appnet"}
    platform.ok("network", "disconnect", "appnet", "stranger")
    assert _wget(platform, "stranger", "http://web/index.html").returncode != 0
    assert _wget(platform, "stranger", f"http://{web_ip}/index.html").returncode != 0
    assert "visitor" not in platform.ok("exec", "web", "cat", "/etc/hosts")
    # and still on its own network (its default route survived)
    assert [n["network"] for n in _inspect(platform, "stranger")["networks"]] == ["othernet"]

    platform.ok("rm", "-f", "web", "client", "stranger")
    platform.ok("network", "rm", "appnet", "othernet")


def test_ip_dns_add_host_and_default_network_flags(platform: Platform) -> None:
    platform.ok("network", "create", "--subnet", "10.91.7.0/24", "ipnet")
    out = platform.ok(
        "run",
        "--rm",
        "--network",
        "ipnet",
        "--ip",
        "10.91.7.50",
        "--dns",
        "9.9.9.9",
        "--add-host",
        "db.example:10.1.2.3",
        "--hostname",
        "h1",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts; ip -4 -o addr show eth0; ip route",
    )
    assert "nameserver 9.9.9.9" in out
    assert "10.1.2.3\tdb.example" in out
    assert "10.91.7.50\th1" in out
    assert "inet 10.91.7.50/24" in out
    assert "default via 10.91.7.1" in out
    for args, needle in (
        (("--network", "ipnet", "--ip", "10.91.8.5"), "not a host address"),
        (("--network", "ipnet", "--ip", "10.91.7.1"), "gateway"),
        (("--ip", "10.91.7.9"), "needs a user-defined network"),
        (("--network", "nosuchnet"), "no such network"),
        (("--dns", "not-an-ip"), "--dns"),
        (("--add-host", "nocolon"), "--add-host"),
    ):
        done = platform.cli("run", "--rm", *args, "busybox", "true")
        assert done.returncode != 0 and needle in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    # the default network (slirp4netns per container) takes --dns and --add-host too
    out = platform.ok(
        "run",
        "--rm",
        "--dns",
        "8.8.4.4",
        "--add-host",
        "x.test:10.9.9.9",
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
    )
    assert "nameserver 8.8.4.4" in out and "10.9.9.9\tx.test" in out
    platform.ok("network", "rm", "ipnet")


def _host_ip() -> str | None:
    """This machine's first non-loopback IPv4 address (what slirp4netns reaches the host by)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        return line.split()[3].split("/")[0]
    return None


def test_published_port_outbound_and_kill_9(platform: Platform) -> None:
    platform.ok("network", "create", "pubnet")
    port = free_port()
    platform.ok("run", "-d", "--name", "pweb", "--network", "pubnet", "-p", f"{port}:80", "busybox", *HTTPD)
    deadline = time.monotonic() + 20
    while True:
        try:
            body = _get(f"http://127.0.0.1:{port}/index.html")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert body == b"hello from dockyard\n"
    assert f"0.0.0.0:{port}->80/tcp" in platform.ok("ps")

    # outbound: a server on the host's own address, reached through the node's slirp4netns
    host_ip = _host_ip()
    if host_ip is not None:
        server = http.server.ThreadingHTTPServer((host_ip, 0), _Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            got = _wget(platform, "pweb", f"http://{host_ip}:{server.server_address[1]}/")
            assert got.stdout == "outside\n", got.stderr
        finally:
            server.shutdown()

    # kill -9 of the runtime: the published port and the network keep working
    pids = subprocess.run(
        ["pgrep", "-f", f"dockyard.runtime .*--state-dir {platform.state_dir}/runtime"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert pids
    os.kill(int(pids[0]), signal.SIGKILL)
    assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n"
    deadline = time.monotonic() + 60
    while platform.cli("ps").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    platform.ok("run", "-d", "--name", "late", "--network", "pubnet", "busybox", "sleep", "600")
    assert _wget(platform, "late", "http://pweb/index.html").stdout == "hello from dockyard\n"

    # the port is free again once the container stops
    platform.ok("rm", "-f", "pweb", "late")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # our own requests left TIME_WAITs
        s.bind(("0.0.0.0", port))
    platform.ok("network", "rm", "pubnet")


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"outside\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
