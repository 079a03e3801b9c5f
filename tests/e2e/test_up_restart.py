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


def test_published_ports_and_interfaces_survive_a_restart_of_up(workdir: Path) -> None:
    ports = (free_port(), free_port())
    web, net_web = free_port(), free_port()
    platform = start(workdir / "state", ports)
    try:
        platform.ok("import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "busybox:latest")
        platform.ok("network", "create", "appnet")
        _serve(platform, "web", web)
        _serve(platform, "netweb", net_web, "--network", "appnet")
        for port in (web, net_web):
            assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n"
        assert stop(platform) == 0
        for name, port in (("web", web), ("netweb", net_web)):  # both still served while up is down
            assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n", name
        platform = start(workdir / "state", ports)
        for name, port in (("web", web), ("netweb", net_web)):
            doc = json.loads(platform.ok("inspect", name))[0]
            assert doc["state"] == "running", doc
            assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n", name
            assert "eth0" in platform.ok("exec", name, "ip", "addr") or "tap0" in platform.ok(
                "exec", name, "ip", "addr"
            )
    finally:
        clean_stop(platform)


def _kill_helpers(state: Path, cid: str) -> None:
    """SIGKILL the container's slirp4netns and port forwarder (what a crash or an OOM kill does)."""
    for pid_file in (*state.glob(f"runtime/containers/{cid}/slirp.pid"),
                     *state.glob(f"runtime/networks/endpoints/{cid}.portfwd.pid")):  # fmt: skip
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_network_helpers_that_died_while_up_was_down_are_started_again(workdir: Path) -> None:
    ports = (free_port(), free_port())
    web, net_web = free_port(), free_port()
    platform = start(workdir / "state", ports)
    try:
        platform.ok("import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "busybox:latest")
        platform.ok("network", "create", "appnet2")
        _serve(platform, "web", web)
        _serve(platform, "netweb", net_web, "--network", "appnet2")
        ids = {name: json.loads(platform.ok("inspect", name))[0]["id"] for name in ("web", "netweb")}
        assert stop(platform) == 0
        for cid in ids.values():
            _kill_helpers(workdir / "state", cid)
        platform = start(workdir / "state", ports)
        for name, port in (("web", web), ("netweb", net_web)):
            assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n", name
    finally:
        clean_stop(platform)
