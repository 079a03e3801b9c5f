"""End to end: the docker CLI itself against `dockyard up`'s Docker Engine API (docker.sock).

The platform runs as the unprivileged user and the docker CLI runs as that user too, through
``DOCKER_HOST=unix://…/docker.sock``; exit codes and output are docker's. A user outside the
``dockyard`` group is refused by the socket's mode.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from docker_cli import DOCKER, Docker
from e2e_platform import Platform, busybox_fixtures, clean_stop, make_workdir, start

from dockyard.adapters.nats.server import free_port, free_port_pair

OUTSIDER = "dockyard-outsider"

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")


workdir, platform = busybox_fixtures("engine-e2e")


@pytest.fixture(scope="module")
def docker(platform: Platform, workdir: Path) -> Docker:
    return Docker(platform, workdir)


def test_the_socket_is_the_gateways_neighbour_and_as_private(platform: Platform) -> None:
    socket = platform.state_dir / "docker.sock"
    gateway = platform.state_dir / "dockyard.sock"
    assert oct(socket.stat().st_mode & 0o777) == oct(gateway.stat().st_mode & 0o777) == "0o660"
    assert socket.stat().st_gid == gateway.stat().st_gid
    info = json.loads(platform.ok("info", "--format", "json"))
    assert info["docker"] == f"unix://{socket}"


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to the outsider user")
def test_a_user_outside_the_group_is_refused(platform: Platform, workdir: Path) -> None:
    done = Docker(platform, workdir, user=OUTSIDER)("ps")
    assert done.returncode != 0 and "permission denied" in done.stderr, done.stderr


def test_version_negotiation(docker: Docker) -> None:
    assert docker.ok("version", "--format", "{{.Server.APIVersion}}").strip() == "1.44"
    assert docker.ok("info", "--format", "{{.OSType}}").strip() == "linux"


def test_run_output_and_exit_codes(docker: Docker) -> None:
    done = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert docker.ok("run", "--rm", "-e", "WHO=docker", "busybox", "sh", "-c", "echo $WHO") == "docker\n"
    assert docker.ok("run", "--rm", "-i", "busybox", "cat", input="through stdin\n") == "through stdin\n"
    missing = docker("run", "--rm", "busybox", "nosuchcommand")
    assert missing.returncode == 127, missing.stderr
    assert docker("run", "--rm", "busybox", "/etc/passwd").returncode == 126
    assert docker("run", "--rm", "nosuch-local-image:1").returncode == 125
    assert docker.ok("ps", "-aq") == ""  # every --rm container is gone


def test_detached_with_a_published_port(docker: Docker) -> None:
    port = free_port()
    cid = docker.ok(
        "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80",
        "-h", "/var/www",
    ).strip()  # fmt: skip
    assert len(cid) == 64
    try:
        body = b""
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == b"hello from dockyard\n"
        assert docker.ok("ps", "--format", "{{.Names}} {{.Status}}").startswith("web Up")
        assert (
            docker.ok("inspect", "-f", "{{.State.Status}} {{.State.Running}}", "web").strip()
            == "running true"
        )
        assert f"127.0.0.1:{port}" in docker.ok("port", "web", "80")
        assert docker.ok("stop", "-t", "1", "web").strip() == "web"
        assert docker.ok("inspect", "-f", "{{.State.Status}}", "web").strip() == "exited"
        assert docker.ok("start", "web").strip() == "web"
        assert docker.ok("restart", "-t", "1", "web").strip() == "web"
    finally:
        assert docker.ok("rm", "-f", "web").strip() == "web"
    gone = docker("inspect", "web")
    assert gone.returncode == 1 and "No such" in gone.stderr + gone.stdout, gone.stderr


def test_logs_wait_and_the_errors_docker_gives(docker: Docker) -> None:
    docker.ok("run", "--name", "talker", "busybox", "sh", "-c", "echo one; echo two >&2")
    try:
        done = docker("logs", "talker")
        assert (done.stdout, done.stderr) == ("one\n", "two\n")
        assert docker.ok("logs", "--tail", "1", "talker") == ""  # the last line was stderr's
        assert docker.ok("wait", "talker").strip() == "0"
        running = docker("rm", "talker")
        assert running.returncode == 0
    finally:
        docker("rm", "-f", "talker")
    missing = docker("logs", "nosuchcontainer")
    assert missing.returncode == 1 and "No such container" in missing.stderr, missing.stderr
    docker.ok("run", "-d", "--name", "sleeper", "busybox", "sleep", "60")
    try:
        refused = docker("rm", "sleeper")
        assert refused.returncode == 1 and "container is running" in refused.stderr, refused.stderr
        docker.ok("kill", "sleeper")
        assert docker.ok("wait", "sleeper").strip() == "137"
    finally:
        docker("rm", "-f", "sleeper")


def test_on_tcp_only_with_the_clusters_certificates(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``up --listen tcp://…``: the Engine API is on the next port, with the gateway's mutual TLS."""
    workdir = make_workdir(Path(tmp_path_factory.mktemp("engine-tcp", numbered=True)))
    port = free_port_pair()
    platform = start(workdir / "state", (free_port(), free_port()), "--listen", f"tcp://127.0.0.1:{port}")
    try:
        certs = platform.state_dir / "tls"
        docker = Docker(platform, workdir)
        docker.env["DOCKER_HOST"] = f"tcp://127.0.0.1:{port + 1}"
        refused = docker("version", "--format", "{{.Server.APIVersion}}")
        assert refused.returncode != 0, refused.stdout  # no certificate: the handshake fails
        docker.env |= {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
        assert docker.ok("version", "--format", "{{.Server.APIVersion}}").strip() == "1.44"
        assert docker.ok("ps", "-a", "--format", "{{.ID}}") == ""
    finally:
        clean_stop(platform)  # its CLI calls miss the TCP gateway; the stop and clean-up hold


def test_a_health_check_from_the_docker_cli(docker: Docker) -> None:
    """``--health-*`` reach the platform's checker; ``ps`` and ``inspect`` show what it found."""
    docker.ok(
        "run", "-d", "--name", "checked", "--health-cmd", "test -f /tmp/ready", "--health-interval", "300ms",
        "--health-retries", "50", "busybox", "sh", "-c", "sleep 1; touch /tmp/ready; sleep 60",
    )  # fmt: skip
    try:
        statuses = []
        for _ in range(100):
            statuses.append(docker.ok("inspect", "-f", "{{.State.Health.Status}}", "checked").strip())
            if statuses[-1] == "healthy":
                break
            time.sleep(0.2)
        assert statuses[0] == "starting" and statuses[-1] == "healthy", statuses
        assert (
            docker.ok("ps", "--format", "{{.Status}}", "--filter", "name=checked")
            .strip()
            .endswith("(healthy)")
        )
    finally:
        docker("rm", "-f", "checked")


def test_log_options_and_drivers(docker: Docker) -> None:
    docker.ok("create", "--name", "logged", "--log-opt", "max-size=1m", "--log-opt", "max-file=2", "busybox")
    try:
        config = docker.ok("inspect", "-f", "{{json .HostConfig.LogConfig}}", "logged")
        assert json.loads(config) == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    finally:
        docker("rm", "logged")
    refused = docker("run", "--rm", "--log-driver", "syslog", "busybox", "true")
    assert refused.returncode == 125 and "logging driver 'syslog'" in refused.stderr, refused.stderr
