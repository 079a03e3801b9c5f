"""End to end: `dockyard up` as the unprivileged user, health, info, an event, a clean stop, a restart."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_platform import PYTHON, USER, as_user, busybox_rootfs_tar, make_workdir, start, stop

from dockyard.adapters.nats.server import free_port, server_info
from dockyard.local.ports import tcp_holder
from dockyard.local.procs import PidRecord, identify
from dockyard.runtime.userns import end_node


def _push_tiny_image(registry: str, repository: str, tag: str, auth: dict[str, str]) -> None:
    """An OCI image of one empty config and no layers, pushed over the Distribution API with
    ``auth`` (the platform's login: its registry refuses anonymous pushes)."""
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    base = f"http://{registry}/v2/{repository}"
    upload = urllib.request.Request(
        f"{base}/blobs/uploads/?digest={digest}", data=config, method="POST", headers=auth
    )
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
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json", **auth},
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
        assert backends["builder"]["info"]["state"] == "SERVICE_STATE_SERVING"
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
        assert text.returncode == 0 and "registry" in text.stdout and "builder" in text.stdout

        # rootless: every service process runs as the unprivileged user
        if os.geteuid() == 0:
            uid = pwd.getpwnam(USER).pw_uid
            pids = subprocess.run(
                ["pgrep", "-f", "--", f"--state-dir {state}/"], capture_output=True, text=True
            )
            found = [int(p) for p in pids.stdout.split()]
            assert len(found) >= 4, pids.stdout
            assert all(os.stat(f"/proc/{pid}").st_uid == uid for pid in found)

        # the registry answers OCI distribution on its HTTP port, to the platform's login only
        auth = platform.registry_headers()
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"http://{platform.registry_http}/v2/", timeout=5)
        assert anonymous.value.code == 401
        request = urllib.request.Request(f"http://{platform.registry_http}/v2/", headers=auth)
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200

        # registry admin through the gateway: what was pushed over HTTP is listed, tagged, measured
        for tag in ("1.0", "2.0"):
            _push_tiny_image(platform.registry_http, "lab/tiny", tag, auth)
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
        end_node(state / "runtime")
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
        code = stop(platform)
        end_node(state / "runtime")
    assert code == 0


@pytest.mark.parametrize("where", ["tcp", "socket", "stale-socket"])
def test_cli_without_a_platform_says_so_in_one_line(where: str, tmp_path: Path) -> None:
    host = {"tcp": f"127.0.0.1:{free_port()}", "socket": f"unix://{tmp_path}/none.sock"}.get(where, "")
    if where == "stale-socket":  # a socket file whose server died
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


# --- the supervisor under failure: kill -9, taken ports, a dead nats-server -------------------------

SERVICES = {"nats", "registry", "runtime", "builder", "gateway", "engine"}


def _platform_pids(state: Path) -> set[int]:
    """Every process the OS knows of that serves this state directory (the services, the Docker
    API beside the gateway's socket, and nats-server)."""
    found = set()
    for pattern in (f"--state-dir {state}/", f"-sd {state}/nats", f"--listen unix://{state}/docker.sock"):
        done = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
        found |= {int(pid) for pid in done.stdout.split()}
    return found


def _wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.1)


def _pause_pid(state: Path) -> int:
    return int((state / "runtime" / "pause.pid").read_text().split()[0])


def test_kill_9_of_the_supervisor_leaves_no_platform_process_and_the_next_up_stops_leftovers(
    workdir: Path,
) -> None:
    ports = (free_port(), free_port())
    state = workdir / "state"
    platform = start(state, ports)
    try:
        record = PidRecord(state / "up.pids").read()
        assert set(record) == SERVICES and all(p.alive() for p in record.values()), record
        assert _platform_pids(state) == {p.pid for p in record.values()}  # the record misses none
        pause = identify(_pause_pid(state))
        assert pause is not None
        # a running container: conmon, not the runtime, is its parent; it outlives the platform
        platform.ok("import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "busybox:latest")
        platform.ok("run", "-d", "--name", "survivor", "busybox", "sleep", "300")
        container = identify(json.loads(platform.ok("inspect", "survivor"))[0]["pid"])
        assert container is not None

        # kill -9: the kernel sends each child its death signal; the runtime kept it across its
        # nsenter re-exec. The pause process is not the supervisor's child: it holds the node's
        # namespace (and would hold running containers) and outlives the platform by design.
        os.kill(platform.process.pid, signal.SIGKILL)
        platform.process.wait(timeout=10)
        _wait_until(
            lambda: not any(p.alive() for p in record.values()),
            20,
            f"children of a killed supervisor die: {[n for n, p in record.items() if p.alive()]}",
        )
        assert not _platform_pids(state)
        assert pause.alive() and container.alive()

        # A child that cannot act on its death signal (stopped) is a leftover still holding the
        # ports; the next `up` on the same state directory stops it and serves on the same ports.
        platform = start(state, ports)
        record = PidRecord(state / "up.pids").read()
        for name in ("nats", "registry"):
            os.kill(record[name].pid, signal.SIGSTOP)
        os.kill(platform.process.pid, signal.SIGKILL)
        platform.process.wait(timeout=10)
        others = [p for n, p in record.items() if n not in ("nats", "registry")]
        _wait_until(lambda: not any(p.alive() for p in others), 20, "the running children die")
        assert record["nats"].alive() and record["registry"].alive()

        platform = start(state, ports)
        assert not record["nats"].alive() and not record["registry"].alive()
        assert "stopped what a previous `dockyard up` left running" in platform.output.read_text()
        assert PidRecord(state / "up.pids").read()["nats"] != record["nats"]
        assert platform.cli("info").returncode == 0
        assert pause.alive()  # the same node namespace, re-entered
        survivor = json.loads(platform.ok("inspect", "survivor"))[0]  # adopted by the new runtime
        assert survivor["pid"] == container.pid and container.alive(), survivor
        platform.ok("rm", "-f", "survivor")
    finally:
        code = stop(platform)
        end_node(state / "runtime")
    assert code == 0
    assert not _platform_pids(state) and not (state / "up.pids").exists()


def test_a_second_up_on_taken_ports_exits_at_once_naming_the_port(workdir: Path) -> None:
    ports = (free_port(), free_port())
    (workdir / "second").mkdir()
    second = make_workdir(workdir / "second")
    first = start(workdir / "first", ports)
    try:
        record = PidRecord(workdir / "first" / "up.pids").read()
        registry_listen = f"127.0.0.1:{ports[1]}"
        taken = {  # what the second `up` is given, what its message must name, whose pid it must name
            "nats": (("--nats-port", str(ports[0])), f"port {ports[0]} (NATS", record["nats"]),
            "registry": (
                ("--registry-listen", registry_listen),
                f"port {ports[1]} (registry",
                record["registry"],
            ),
            "gateway": (
                ("--listen", first.gateway),
                f"socket {workdir}/first/dockyard.sock",
                record["gateway"],
            ),
        }
        for name, (flags, where, holder) in taken.items():
            argv = ["--nats-port", str(free_port()), "--registry-listen", f"127.0.0.1:{free_port()}", *flags]
            began = time.monotonic()
            done = subprocess.run(
                [*as_user(), PYTHON, "-m", "dockyard.cli", "up", "--state-dir", str(second), *argv],
                capture_output=True,
                text=True,
                timeout=60,
            )
            took = time.monotonic() - began
            assert done.returncode == 1, (name, done.stdout, done.stderr)
            assert took < 15, (name, took)
            assert done.stderr.count("\n") == 1 and where in done.stderr, (name, done.stderr)
            assert f"pid {holder.pid} (" in done.stderr and "user " in done.stderr, (name, done.stderr)
            assert "platform ready" not in done.stdout
            assert not _platform_pids(second), name  # nothing of the second platform was started

        # a port held by something that is not a platform at all: the holder's user is named
        with socket.socket() as foreign:
            foreign.bind(("127.0.0.1", 0))
            foreign.listen()
            port = foreign.getsockname()[1]
            done = subprocess.run(
                [*as_user(), PYTHON, "-m", "dockyard.cli", "up", "--state-dir", str(second),
                 "--nats-port", str(free_port()), "--registry-listen", f"127.0.0.1:{port}"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        assert done.returncode == 1 and f"port {port} (registry HTTP" in done.stderr, done.stderr
        assert f"user {pwd.getpwuid(os.geteuid()).pw_name}" in done.stderr, done.stderr

        # the first platform did not notice
        assert first.process.poll() is None and first.cli("info").returncode == 0
    finally:
        code = stop(first)
        end_node(workdir / "first" / "runtime")
        assert code == 0


def test_nats_killed_comes_back_and_the_events_that_waited_arrive(workdir: Path) -> None:
    ports = (free_port(), free_port())
    state = workdir / "state"
    platform = start(state, ports, "--log-max-bytes", "1024", "--log-files", "2")
    try:
        nats = PidRecord(state / "up.pids").read()["nats"]
        auth = platform.registry_headers()
        # Hold the supervisor while NATS is dead so the outage lasts as long as the test needs.
        os.kill(platform.process.pid, signal.SIGSTOP)
        try:
            os.kill(nats.pid, signal.SIGKILL)
            _wait_until(lambda: not nats.alive(), 10, "nats-server dies")
            try:
                socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
            except OSError:
                pass  # nothing answers on the NATS port
            else:
                pytest.fail(f"port {ports[0]} answers with nats-server dead: {tcp_holder(ports[0])}")
            _push_tiny_image(platform.registry_http, "lab/outage", "during", auth)
            pending = state / "registry" / "outbox" / "pending"
            assert any(pending.iterdir()), "the push's events wait in the registry's outbox"
        finally:
            os.kill(platform.process.pid, signal.SIGCONT)

        # the supervisor restarts nats-server (on the same port, the same JetStream store)
        def restarted() -> bool:
            again = PidRecord(state / "up.pids").read().get("nats")
            if again is None or again == nats or not again.alive():
                return False
            try:
                return str(server_info("127.0.0.1", ports[0])["server_name"]).startswith("dockyard-")
            except (OSError, ValueError):
                return False

        _wait_until(restarted, 30, "nats-server is restarted")

        # the events that waited are delivered, and the older ones are still in the stream
        def arrived() -> bool:
            events = platform.cli("events", "--since", "10m", "--until", "0s", "--format", "json")
            kinds = {
                (json.loads(line)["type"], json.loads(line)["subject"]) for line in events.stdout.splitlines()
            }
            pushed = any(t == "io.dockyard.registry.manifest_pushed" and "lab/outage" in s for t, s in kinds)
            return pushed and ("io.dockyard.service.started", "gateway") in kinds

        _wait_until(arrived, 60, "the event pushed during the outage arrives")
        _wait_until(lambda: not any(pending.iterdir()), 30, "the registry's outbox empties")

        # every log up writes is rotated by size: at most --log-files files of --log-max-bytes each
        logs = state / "logs"
        names = {p.name for p in logs.iterdir()}
        assert "nats.log.1" in names, names  # a nats-server start writes about 2 KiB
        for name in ("nats", "registry", "runtime", "builder", "gateway"):
            assert f"{name}.log" in names and f"{name}.log.2" not in names, names
        assert all(p.stat().st_size <= 1024 for p in logs.iterdir()), {
            p.name: p.stat().st_size for p in logs.iterdir()
        }
    finally:
        code = stop(platform)
        end_node(state / "runtime")
    assert code == 0, platform.output.read_text()
