"""End to end: containers outlive `dockyard up` by design, and so must their networking: after
`up` is stopped and started again, a published port still answers and the container still has
its interface, on the default network and on a user network."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_platform import Platform, busybox_rootfs_tar, clean_stop, make_workdir, start, stop

from dockyard.adapters.nats.server import free_port


def _get(url: str, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                body: bytes = reply.read()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _serve(platform: Platform, name: str, port: int, *extra: str) -> None:
    platform.ok("run", "-d", "--name", name, "-p", f"{port}:80", *extra,
                "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www")  # fmt: skip


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("up-restart", numbered=True)))


SERVERS = ("web", "netweb")  # one on the default network, one on a user network


def _restarted_with_two_servers(workdir: Path, while_down: Callable[[dict[str, str]], None]) -> None:
    """Serve on both networks, stop `up`, run ``while_down(ids by name)``, start `up` again: both
    containers still run and their ports answer."""
    ports = (free_port(), free_port())
    published = {name: free_port() for name in SERVERS}
    platform = start(workdir / "state", ports)
    try:
        platform.ok("import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "busybox:latest")
        platform.ok("network", "create", "appnet")
        _serve(platform, "web", published["web"])
        _serve(platform, "netweb", published["netweb"], "--network", "appnet")
        ids = {name: json.loads(platform.ok("inspect", name))[0]["id"] for name in SERVERS}
        assert stop(platform) == 0
        for name, port in published.items():  # containers outlive up: still served while it is down
            assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n", name
        while_down(ids)
        platform = start(workdir / "state", ports)
        for name, port in published.items():
            assert json.loads(platform.ok("inspect", name))[0]["state"] == "running", name
            assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n", name
            addresses = platform.ok("exec", name, "ip", "addr")
            assert "eth0" in addresses or "tap0" in addresses, addresses
    finally:
        clean_stop(platform)


def test_published_ports_and_interfaces_survive_a_restart_of_up(workdir: Path) -> None:
    _restarted_with_two_servers(workdir, lambda ids: None)


def _kill_helpers(state: Path, cid: str) -> None:
    """SIGKILL the container's slirp4netns and port forwarder (what a crash or an OOM kill does)."""
    for pid_file in (*state.glob(f"runtime/containers/{cid}/slirp.pid"),
                     *state.glob(f"runtime/networks/endpoints/{cid}.portfwd.pid")):  # fmt: skip
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_network_helpers_that_died_while_up_was_down_are_started_again(workdir: Path) -> None:
    def kill_them(ids: dict[str, str]) -> None:
        for cid in ids.values():
            _kill_helpers(workdir / "state", cid)

    _restarted_with_two_servers(workdir, kill_them)
