"""End to end: `dockyard up` as the unprivileged user, health, info, an event, a clean stop, a restart."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import signal
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from e2e_platform import PYTHON, USER, as_user, make_workdir, start, stop

from dockyard.adapters.nats.server import free_port


def _push_tiny_image(registry: str, repository: str, tag: str) -> None:
    """An OCI image of one empty config and no layers, pushed over the Distribution API."""
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    base = f"http://{registry}/v2/{repository}"
    upload = urllib.request.Request(f"{base}/blobs/uploads/?digest={digest}", data=config, method="POST")
    with urllib.request.urlopen(upload, timeout=10) as reply:
        assert reply.status == 201
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 2},
        "layers": [],
    }
    request = urllib.request.Request(
        f"{base}/manifests/{tag}",
        data=json.dumps(manifest).encode(),
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 201


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Under /tmp, world-traversable, owned by the user who runs the platform.
    return make_workdir(Path(tmp_path_factory.mktemp("e2e", numbered=True)))


def test_up_serves_reports_events_and_stops_cleanly(workdir: Path) -> None:
    ports = (free_port(), free_port())
    state = workdir / "state"
    platform = start(state, ports)
    try:
        # info: every backend answers, with its health and version
        info = platform.cli("info", "--format", "json")
        assert info.returncode == 0, info.stderr
        status = json.loads(info.stdout)
        backends = {b["name"]: b for b in status["backends"]}
        assert set(backends) == {"registry", "runtime", "builder"}
        assert all(b["health"] == "SERVING" for b in backends.values()), backends
        assert backends["registry"]["info"]["state"] == "SERVICE_STATE_SERVING"
        assert backends["runtime"]["info"]["state"] == "SERVICE_STATE_SERVING"
        assert backends["builder"]["info"]["state"] == "SERVICE_STATE_NOT_IMPLEMENTED"
        assert status["gateway"]["version"]

        # access: the gateway on a unix socket only its user and group may open, the backends on
        # private sockets in a 0700 directory
        gateway = state / "dockyard.sock"
        assert gateway.is_socket() and stat.S_IMODE(gateway.stat().st_mode) == 0o660
        assert stat.S_IMODE((state / "sockets").stat().st_mode) == 0o700
        assert {b["address"] for b in backends.values()} == {
            f"unix:{state}/sockets/{name}.sock" for name in ("registry", "runtime", "builder")
        }
        assert status["gateway"]["details"]["grpc"] == f"unix:{gateway}"
        text = platform.cli("info")
        assert text.returncode == 0 and "registry" in text.stdout and "not_implemented" in text.stdout

        # rootless: every service process runs as the unprivileged user
        if os.geteuid() == 0:
            uid = pwd.getpwnam(USER).pw_uid
            pids = subprocess.run(
                ["pgrep", "-f", "--", f"--state-dir {state}/"], capture_output=True, text=True
            )
            found = [int(p) for p in pids.stdout.split()]
            assert len(found) >= 4, pids.stdout
            assert all(os.stat(f"/proc/{pid}").st_uid == uid for pid in found)

        # the registry answers OCI distribution on its HTTP port
        with urllib.request.urlopen(f"http://{platform.registry_http}/v2/", timeout=5) as resp:
            assert resp.status == 200

        # registry admin through the gateway: what was pushed over HTTP is listed, tagged, measured
        for tag in ("1.0", "2.0"):
            _push_tiny_image(platform.registry_http, "lab/tiny", tag)
        assert platform.cli("registry", "ls").stdout.split() == ["lab/tiny"]
        assert platform.cli("registry", "tags", "lab/tiny").stdout.split() == ["1.0", "2.0"]
        dry = platform.cli("registry", "gc", "--dry-run")
        assert dry.returncode == 0 and "would free 0 blobs" in dry.stdout
        missing = platform.cli("registry", "tags", "lab/none")
        assert missing.returncode == 1 and missing.stderr == "dockyard: repository lab/none unknown\n"

        # events: every service announced itself; the stream can be replayed from the start
        deadline = time.monotonic() + 30
        while True:
            events = platform.cli("events", "--since", "10m", "--until", "0s", "--format", "json")
            assert events.returncode == 0, events.stderr
            started = {
                json.loads(line)["subject"]
                for line in events.stdout.splitlines()
                if json.loads(line)["type"] == "io.dockyard.service.started"
            }
            if {"registry", "runtime", "builder", "gateway"} <= started or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {"registry", "runtime", "builder", "gateway"} <= started
        filtered = platform.cli("events", "--since", "10m", "--until", "0s", "--filter", "entity=gateway")
        assert filtered.returncode == 0
        assert filtered.stdout.strip() and all(" gateway " in line for line in filtered.stdout.splitlines())

        # a bad filter is one readable line, not a traceback
        bad = platform.cli("events", "--filter", "colour=red")
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr

        # a service that dies is restarted by the supervisor
        runtime = subprocess.run(
            ["pgrep", "-f", "--", f"dockyard.runtime .*--state-dir {state}/runtime"],
            capture_output=True,
            text=True,
        )
        os.kill(int(runtime.stdout.split()[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = subprocess.run(
                ["pgrep", "-f", "--", f"dockyard.runtime .*--state-dir {state}/runtime"],
                capture_output=True,
                text=True,
            )
            status = json.loads(platform.cli("info", "--format", "json").stdout)
            health = {b["name"]: b["health"] for b in status["backends"]}
            if again.stdout and again.stdout != runtime.stdout and health["runtime"] == "SERVING":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"runtime was not restarted: {platform.output.read_text()}")

        # a second `up` on the same state directory refuses while the first runs
        second = subprocess.run(
            [*as_user(), PYTHON, "-m", "dockyard.cli", "up", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1 and "another `dockyard up`" in second.stderr
    finally:
        code = stop(platform)
    assert code == 0, platform.output.read_text()
    assert "platform stopped" in platform.output.read_text()
    assert subprocess.run(["pgrep", "-f", "--", f"--state-dir {state}/"], capture_output=True).returncode == 1

    # a second `up` on the same state directory finds everything intact: the old events are still there
    platform = start(state, ports)
    try:
        replay = platform.cli("events", "--since", "1h", "--until", "0s", "--filter", "action=stopping")
        assert replay.returncode == 0, replay.stderr
        assert len(replay.stdout.splitlines()) >= 4, replay.stdout  # each service's stop, from the first run
    finally:
        assert stop(platform) == 0


@pytest.mark.parametrize("where", ["tcp", "socket", "stale-socket"])
def test_cli_without_a_platform_says_so_in_one_line(where: str, tmp_path: Path) -> None:
    host = {"tcp": f"127.0.0.1:{free_port()}", "socket": f"unix://{tmp_path}/none.sock"}.get(where, "")
    if where == "stale-socket":  # a socket file whose server died
        import socket

        path = tmp_path / "dead.sock"
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(path))
        host = f"unix://{path}"
    result = subprocess.run(
        [PYTHON, "-m", "dockyard.cli", "-H", host, "info", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("dockyard: ") and result.stderr.count("\n") == 1, result.stderr
    if where != "tcp":
        assert host in result.stderr and "dockyard up" in result.stderr
