"""Helpers for the interop tests: our registry as a subprocess, podman as the unprivileged user.

Registry: ``start_registry`` runs ``dockyard-registry serve`` (the ``registry_server`` fixture in
conftest.py starts one per test on a free loopback port with a fresh storage root under
``tmp_path``, waits until ``/v2/`` answers, and stops it afterwards. It runs without auth unless
parametrized indirectly with a :class:`RegistryAuth`::

    @pytest.mark.parametrize("registry_server", [RegistryAuth("basic")], indirect=True)
    def test_x(registry_server: RegistryServer) -> None: ...

Layout under ``tmp_path``::

    tmp_path/
    └── registry/
        ├── root/        storage root (--root)
        ├── state/       service state: the event outbox (--state-dir)
        ├── htpasswd     bcrypt hashes of RegistryAuth.users (auth modes only)
        ├── access       RegistryAuth.access lines (when given)
        └── server.log   the server's stdout + stderr (structlog, one line per refusal)

Podman: :class:`Podman` runs ``podman`` as the unprivileged ``dockyard`` user (the tests run as
root in CI) with everything private to one temporary directory, so neither root's nor the user's
real configuration or storage is touched::

    /tmp/dockyard-podman-XXXX/      owned by the user (pytest's tmp_path is 0700 root, unusable)
    ├── home/                        HOME
    ├── config/                      XDG_CONFIG_HOME
    ├── run/                         XDG_RUNTIME_DIR (0700); libpod/tmp/pause.pid: the userns holder
    ├── storage/  runroot/           --root / --runroot (vfs driver: no mounts needed)
    ├── registries.conf              empty: no search registries, no mirrors
    ├── containers.conf              cgroupfs + file events (no systemd session here)
    ├── auth.json                    REGISTRY_AUTH_FILE (podman login writes here)
    └── rootfs.tar                   /bin/busybox (static) + /bin/sh, imported as the base image

Costs: start-up is ~1 s (a Python process importing aiohttp); bcrypt hashes use cost 4 to stay fast;
a podman call is ~0.1-0.3 s for these ~2 MB images.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bcrypt
import pytest
import requests

TOKEN_SECRET = "interop-test-secret-0123456789abcdef"  # >= 32 chars, as token mode requires
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class RegistryAuth:
    """How the registry under test authenticates: mode, users (name → password), access rules."""

    mode: Literal["none", "basic", "token"] = "none"
    users: dict[str, str] = field(default_factory=dict)
    access: tuple[str, ...] = ()  # lines ``user:pull[,push][:repo-glob]``; empty → no policy file
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS

    def __str__(self) -> str:  # readable test ids
        return self.mode


@dataclass
class RegistryServer:
    """A running ``dockyard-registry serve`` process and what a test needs to talk to it."""

    host: str
    port: int
    root: Path
    log_path: Path
    auth: RegistryAuth
    process: subprocess.Popen[bytes]
    grpc_address: str = ""
    state_dir: Path | None = None

    @property
    def address(self) -> str:
        """``host:port``, the registry part of an image reference."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.auth.tls else 'http'}://{self.address}"

    def log(self) -> str:
        """The server's log so far, colour codes stripped."""
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The server's structured (JSON-lines) log records so far, optionally only one ``event``."""
        records = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                records.append(record)
        return records

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        scope: str = "",
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        """One HTTP request to ``path`` as ``user`` (None: anonymous).

        Basic mode sends basic credentials; token mode first fetches a bearer token for ``scope``
        (default: pull on the repository named in ``path``) from ``/token`` with basic credentials.
        """
        hdrs = dict(headers or {})
        if user is not None and self.auth.mode != "none":
            creds = (user, self.auth.users[user])
            if self.auth.mode == "basic":
                hdrs["Authorization"] = requests.auth._basic_auth_str(*creds)
            else:
                if not scope and (m := re.match(r"^/v2/(.+?)/(?:manifests|blobs|tags|referrers)/", path)):
                    scope = f"repository:{m.group(1)}:pull"
                params = {"service": "dockyard-registry"} | ({"scope": scope} if scope else {})
                r = requests.get(f"{self.url}/token", params=params, auth=creds, timeout=10)
                r.raise_for_status()
                hdrs["Authorization"] = f"Bearer {r.json()['token']}"
        return requests.request(method, self.url + path, headers=hdrs, data=data, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _registry_executable() -> str:
    beside = Path(sys.executable).parent / "dockyard-registry"
    if beside.exists():
        return str(beside)
    found = shutil.which("dockyard-registry")
    if found is None:
        pytest.fail("dockyard-registry is not installed in this environment (run `make setup`)")
    return found


def start_registry(base: Path, auth: RegistryAuth, *, timeout: float = 20.0) -> RegistryServer:
    """Start ``dockyard-registry serve`` under ``base`` and wait until ``/v2/`` answers (200 or 401)."""
    base.mkdir(parents=True, exist_ok=True)
    port, grpc_address = free_port(), f"127.0.0.1:{free_port()}"
    argv = [
        _registry_executable(),
        "serve",
        "--root",
        str(base / "root"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--auth",
        auth.mode,
        # The service host's own parts, kept private to this test: gRPC on a free port, state
        # (outbox) under base, and a NATS URL nobody listens on (events wait in the outbox).
        "--grpc-listen",
        grpc_address,
        "--state-dir",
        str(base / "state"),
        "--nats-url",
        f"nats://127.0.0.1:{free_port()}",
    ]
    if auth.mode != "none":
        htpasswd = base / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}\n"
                for user, pw in auth.users.items()
            )
        )
        argv += ["--htpasswd", str(htpasswd)]
        if auth.access:
            (base / "access").write_text("\n".join(auth.access) + "\n")
            argv += ["--access", str(base / "access")]
    if auth.mode == "token":
        argv += ["--token-secret", TOKEN_SECRET]
    if auth.tls:
        argv += ["--tls-cert", str(auth.tls[0]), "--tls-key", str(auth.tls[1])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    log_path = base / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = RegistryServer(
        "127.0.0.1", port, base / "root", log_path, auth, proc, grpc_address, base / "state"
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"dockyard-registry exited with {proc.returncode}:\n{server.log()}")
        try:
            verify = str(auth.tls[0]) if auth.tls else True
            status = requests.get(f"{server.url}/v2/", timeout=1, verify=verify).status_code
            if status in (200, 401):
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            stop_registry(server)
            pytest.fail(f"dockyard-registry did not answer /v2/ within {timeout}s:\n{server.log()}")
        time.sleep(0.05)


def stop_registry(server: RegistryServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


PODMAN_USER = "dockyard"


class Podman:
    """``podman`` run as the unprivileged user with private config, storage and credentials."""

    def __init__(self, user: str = PODMAN_USER) -> None:
        self.user = pwd.getpwnam(user)
        self.dir = Path(tempfile.mkdtemp(prefix="dockyard-podman-"))
        for sub in ("home", "config", "run", "storage", "runroot", "rootfs/bin"):
            (self.dir / sub).mkdir(parents=True)
        (self.dir / "run").chmod(0o700)
        shutil.copy2("/bin/busybox", self.dir / "rootfs/bin/busybox")
        (self.dir / "rootfs/bin/sh").symlink_to("busybox")
        subprocess.run(
            ["tar", "-C", str(self.dir / "rootfs"), "-cf", str(self.dir / "rootfs.tar"), "."], check=True
        )
        (self.dir / "registries.conf").write_text("")
        (self.dir / "containers.conf").write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        )
        self.auth_file.write_text('{"auths": {}}')
        for path in [self.dir, *self.dir.rglob("*")]:
            os.lchown(path, self.user.pw_uid, self.user.pw_gid)

    @property
    def auth_file(self) -> Path:
        return self.dir / "auth.json"

    def auths(self) -> dict[str, object]:
        """The ``auths`` section podman login/logout maintain."""
        auths: dict[str, object] = json.loads(self.auth_file.read_text()).get("auths", {})
        return auths

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``podman <args>`` as the user; raises AssertionError with podman's stderr when check fails."""
        d = self.dir
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(d / "home"),
            "USER": self.user.pw_name,
            "XDG_RUNTIME_DIR": str(d / "run"),
            "XDG_CONFIG_HOME": str(d / "config"),
            "CONTAINERS_REGISTRIES_CONF": str(d / "registries.conf"),
            "CONTAINERS_CONF": str(d / "containers.conf"),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
        }
        argv = [
            "runuser", "-u", self.user.pw_name, "--",
            "env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "podman", "--root", str(d / "storage"), "--runroot", str(d / "runroot"),
            "--storage-driver", "vfs",
            *args,
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=d)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def import_base(self, ref: str) -> str:
        """Import the busybox rootfs as ``ref``; returns the image ID."""
        return self.run("import", "--quiet", str(self.dir / "rootfs.tar"), ref).stdout.strip()

    def inspect(self, ref: str) -> dict[str, object]:
        info: dict[str, object] = json.loads(self.run("image", "inspect", ref).stdout)[0]
        return info

    def exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def close(self) -> None:
        """Stop the user's pause process (it holds the user namespace) and delete everything."""
        pid_file = self.dir / "run/libpod/tmp/pause.pid"
        try:
            pid = int(pid_file.read_text().strip())
            status = Path(f"/proc/{pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            if int(uid_line.split()[1]) == self.user.pw_uid:  # still our pause process, not a reused pid
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, StopIteration):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
