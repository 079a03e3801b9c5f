"""Who may use the platform: a real `dockyard up` started as root, called by root, a member of the
`dockyard` group and an outsider; TCP with and without a client certificate; the backends' sockets.

The platform drops to the `dockyard` user as it does in production. Its public socket goes where
root's platform puts it, with the run directory moved to a private place (``DOCKYARD_RUN_DIR``) so
a platform already running on this machine is left alone. The outsider is `dockyard-outsider`
(made by ``make setup``, and here if missing); "a member" is that same user given the `dockyard`
group, which is all membership is to the kernel.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.adapters.grpc.server import GrpcServer
from dockyard.adapters.grpc.tls import ensure_material
from dockyard.adapters.nats.server import free_port, free_port_pair
from dockyard.client.connection import socket_candidates
from dockyard.runtime.userns import end_node

PYTHON = sys.executable
USER = os.environ.get("DOCKYARD_USER", "dockyard")
GROUP = os.environ.get("DOCKYARD_GROUP", "dockyard")
OUTSIDER = "dockyard-outsider"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="starts the platform as root and switches users")


@dataclass
class Platform:
    process: subprocess.Popen[str]
    state: Path
    env: dict[str, str]
    output: Path
    ready_text: str = field(default="")


def _ensure_outsider() -> None:
    try:
        pwd.getpwnam(OUTSIDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OUTSIDER], check=True)


def _as(who: str) -> list[str]:
    """A command prefix that runs as ``who``: root, member (outsider + the dockyard group), outsider."""
    if who == "root":
        return []
    groups = ["--groups", str(grp.getgrnam(GROUP).gr_gid)] if who == "member" else ["--clear-groups"]
    return ["setpriv", "--reuid", OUTSIDER, "--regid", OUTSIDER, *groups, "--"]


def cli(
    platform: Platform, who: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_as(who), PYTHON, "-m", "dockyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**platform.env, **(env or {})},
        cwd="/",
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # world-traversable up to here, so only the platform's own directories decide who gets in
    path = Path(tmp_path_factory.mktemp("access", numbered=True))
    path.chmod(0o755)
    for parent in path.parents:
        if parent == Path("/"):
            break
        if not parent.stat().st_mode & 0o001:
            parent.chmod(parent.stat().st_mode | 0o001)
    return path


def _start(workdir: Path, name: str, *extra: str) -> Platform:
    _ensure_outsider()
    state = workdir / name / "state"
    output = workdir / f"{name}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_") and k != "XDG_RUNTIME_DIR"}
    env |= {"DOCKYARD_RUN_DIR": str(workdir / name / "run"), "DOCKYARD_LOG_LEVEL": "info"}
    cmd = [PYTHON, "-m", "dockyard.cli", "up", "--state-dir", str(state), "--nats-port", str(free_port()),
           "--registry-listen", f"127.0.0.1:{free_port()}", *extra]  # fmt: skip
    with open(output, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    platform = Platform(process, state, env, output)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = output.read_text()
        if process.poll() is not None:
            pytest.fail(f"dockyard up exited {process.returncode}:\n{text}")
        if "platform ready" in text:
            platform.ready_text = text
            return platform
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"dockyard up not ready in 90 s:\n{output.read_text()}")


def _stop(platform: Platform) -> None:
    platform.process.send_signal(signal.SIGTERM)
    code = platform.process.wait(timeout=60)
    end_node(platform.state / "runtime")  # its node namespace outlives it by design; a test's must not
    assert code == 0, platform.output.read_text()


@pytest.fixture(scope="module")
def unix_platform(workdir: Path) -> Iterator[Platform]:
    if os.geteuid() != 0:
        pytest.skip("starts the platform as root")
    platform = _start(workdir, "unix")
    try:
        yield platform
    finally:
        _stop(platform)


@pytest.fixture(scope="module")
def tcp_platform(workdir: Path) -> Iterator[tuple[Platform, str]]:
    if os.geteuid() != 0:
        pytest.skip("starts the platform as root")
    address = f"127.0.0.1:{free_port_pair()}"  # the Engine API takes the next port
    platform = _start(workdir, "tcp", "--listen", f"tcp://{address}")
    try:
        yield platform, address
    finally:
        _stop(platform)


@needs_root
def test_the_socket_serves_root_and_the_group_and_refuses_an_outsider(unix_platform: Platform) -> None:
    run_dir = Path(unix_platform.env["DOCKYARD_RUN_DIR"])
    sock = run_dir / "dockyard.sock"
    user, group = pwd.getpwnam(USER), grp.getgrnam(GROUP)
    assert f"unix://{sock}" in unix_platform.ready_text

    # root made the run directory for the platform's user before dropping to it
    info = run_dir.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, group.gr_gid, 0o750)
    info = sock.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, group.gr_gid, 0o660)

    # root and a member of the group find the socket without -H, and are served
    for who in ("root", "member"):
        result = cli(unix_platform, who, "info", "--format", "json")
        assert result.returncode == 0, (who, result.stderr)
        assert {b["name"] for b in json.loads(result.stdout)["backends"]} == {
            "registry",
            "runtime",
            "builder",
        }

    # an outsider is refused, in one line that says why, whether it found the socket or was told
    for args in ((), ("-H", f"unix://{sock}")):
        result = cli(unix_platform, "outsider", *args, "info")
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"dockyard: permission denied on unix://{sock}")
        assert f"`{GROUP}` group" in result.stderr


@needs_root
def test_backends_listen_on_private_sockets_only(unix_platform: Platform) -> None:
    sockets = unix_platform.state / "sockets"
    info = sockets.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (pwd.getpwnam(USER).pw_uid, 0o700)
    status = json.loads(cli(unix_platform, "root", "info", "--format", "json").stdout)
    addresses = {b["name"]: b["address"] for b in status["backends"]}
    assert addresses == {name: f"unix:{sockets}/{name}.sock" for name in ("registry", "runtime", "builder")}

    # neither an outsider nor a member of the group can even connect to a backend
    probe = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    for who in ("outsider", "member"):
        for name in ("registry", "runtime", "builder"):
            path = sockets / f"{name}.sock"
            result = subprocess.run(
                [*_as(who), PYTHON, "-c", probe, str(path)], capture_output=True, text=True
            )
            assert result.returncode != 0 and "PermissionError" in result.stderr, (who, name, result.stderr)
    # ... while the gateway (the platform's user) reaches them: every backend is SERVING through it
    assert all(b["health"] == "SERVING" for b in status["backends"]), status

    # `dockyard-registry gc` finds the serving registry at its default address, the private socket
    gc = subprocess.run(
        [
            PYTHON,
            "-m",
            "dockyard.registry",
            "gc",
            "--dry-run",
            "--state-dir",
            str(unix_platform.state / "registry"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=unix_platform.env,
    )
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["mode"] == "online"


@needs_root
def test_tcp_serves_only_clients_with_a_certificate_from_its_ca(
    tcp_platform: tuple[Platform, str], tmp_path: Path
) -> None:
    platform, address = tcp_platform
    tls = platform.state / "tls"
    assert {p.name for p in tls.iterdir()} >= {
        "ca.pem",
        "cert.pem",
        "key.pem",
        "server-cert.pem",
        "server-key.pem",
    }
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls / "ca-key.pem").stat().st_mode) == 0o600
    assert not (Path(platform.env["DOCKYARD_RUN_DIR"]) / "dockyard.sock").exists()  # TCP instead, not as well

    def info(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return cli(platform, "root", "-H", f"tcp://{address}", *args, "info", "--timeout", "5", env=env)

    # refused: in the clear; TLS without a client certificate; a certificate another CA signed
    stranger = ensure_material(tmp_path / "stranger")
    refused = [
        info(),
        info("--tlscacert", str(tls / "ca.pem")),
        info("--tlscacert", str(tls / "ca.pem"), "--tlscert", str(stranger.directory / "cert.pem"),
             "--tlskey", str(stranger.directory / "key.pem")),
    ]  # fmt: skip
    for result, says in zip(
        refused, ("mutual TLS", "certificate its CA signed", "gateway's CA"), strict=True
    ):
        assert result.returncode == 1, result
        assert result.stderr.startswith("dockyard: ") and result.stderr.count("\n") == 1, result.stderr
        assert says in result.stderr, result.stderr

    # served: the generated client certificate, by flags or by docker-style environment
    served = [
        info("--tlscacert", str(tls / "ca.pem"), "--tlscert", str(tls / "cert.pem"),
             "--tlskey", str(tls / "key.pem")),
        info("--tlsverify", env={"DOCKYARD_CERT_PATH": str(tls)}),
        cli(platform, "root", "info", env={"DOCKYARD_HOST": f"tcp://localhost:{address.split(':')[1]}",
                                           "DOCKYARD_CERT_PATH": str(tls), "DOCKYARD_TLS_VERIFY": "1"}),
    ]  # fmt: skip
    for result in served:
        assert result.returncode == 0, result.stderr
        assert "registry" in result.stdout


# --- the bind helper and the CLI's search, in-process --------------------------------------------


async def test_a_stale_socket_is_replaced_and_a_live_one_is_never_taken(tmp_path: Path) -> None:
    path = tmp_path / "s" / "svc.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as dead:  # left behind by a process that died
        dead.bind(str(path))
    first = GrpcServer(f"unix://{path}", [], socket_mode=0o640)
    await first.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        second = GrpcServer(f"unix:{path}", [])
        with pytest.raises(OSError, match="another server answers"):
            await second.start()
        assert path.is_socket()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # the first server still owns it
    finally:
        await first.stop(0)
    assert not path.exists()

    path.write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        await GrpcServer(f"unix:{path}", []).start()
    with pytest.raises(OSError, match="longer than"):
        await GrpcServer(f"unix:{tmp_path / ('x' * 120)}.sock", []).start()


async def test_a_new_socket_is_never_wider_than_asked(tmp_path: Path) -> None:
    old = os.umask(0)  # a careless umask must not leak into the socket's mode
    try:
        server = GrpcServer(f"unix:{tmp_path / 'private' / 'svc.sock'}", [])
        await server.start()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "private" / "svc.sock").stat().st_mode) == 0o600
    finally:
        await server.stop(0)


def test_the_cli_looks_for_the_socket_in_the_documented_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_RUN_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    monkeypatch.setenv("DOCKYARD_STATE_DIR", "/srv/dy")
    assert socket_candidates() == [
        Path("/run/user/4242/dockyard/dockyard.sock"),
        Path("/srv/dy/dockyard.sock"),
        Path("/run/dockyard/dockyard.sock"),
    ]
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert socket_candidates() == [Path("/srv/dy/dockyard.sock"), Path("/run/dockyard/dockyard.sock")]


def test_a_tcp_gateway_without_tls_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "dockyard.gateway", "--grpc-listen", f"tcp://127.0.0.1:{free_port()}",
         "--state-dir", str(tmp_path / "gw")],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "without mutual TLS" in result.stderr and "Traceback" not in result.stderr
