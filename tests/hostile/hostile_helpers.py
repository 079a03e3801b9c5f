"""A real ``dockyard-registry serve`` process for the hostile suite, started as interop_helpers does
(free loopback ports, storage and state under the test's directory, NATS pointed at a closed port so
events wait in the outbox), plus the knobs these tests turn: extra flags, an open-files limit for
the child, a storage root of the test's choosing (a small tmpfs, say).

    proc = start(tmp_path, "--max-connections", "100", nofile=1024)
    proc.get("/v2/")                     # requests.Response
    proc.fds()                           # open descriptors of the process right now
    proc.alive()                         # /v2/ answers 200 within a second
    stop(proc)

Layout under ``base``::

    base/
    ├── root/        storage root (unless ``root=`` names another)
    ├── state/       the outbox (--state-dir)
    ├── htpasswd     bcrypt (cost 4) hashes of ``users`` (auth modes only)
    ├── access       ``access`` lines (when given)
    └── server.log   stdout + stderr (JSON lines)
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

TOKEN_SECRET = "hostile-test-secret-0123456789abcdef0123"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sha(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass
class Proc:
    """A running registry process."""

    port: int
    grpc: str
    root: Path
    base: Path
    process: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)
    mode: str = "none"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")

    def log_records(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and (event is None or rec.get("event") == event):
                out.append(rec)
        return out

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def token(self, user: str, *scopes: str) -> str:
        params: list[tuple[str, str]] = [("service", "dockyard-registry")]
        params += [("scope", s) for s in scopes]
        r = requests.get(f"{self.url}/token", params=params, auth=(user, self.users[user]), timeout=10)
        r.raise_for_status()
        token: str = r.json()["token"]
        return token

    def request(self, method: str, path: str, *, token: str = "", **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url + path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def alive(self) -> bool:
        try:
            return requests.get(self.url + "/v2/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    # ---- pushing, the plain way (POST ?digest= monolithic; manifests by tag or digest)

    def push_blob(self, repo: str, data: bytes, *, token: str = "", algorithm: str = "sha256") -> str:
        d = sha(data, algorithm)
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data=data, token=token)
        assert r.status_code == 201, (r.status_code, r.text)
        return d

    def push_image(self, repo: str, tag: str, seed: bytes, *, token: str = "") -> tuple[str, list[str]]:
        config, layer = b'{"seed":"' + seed + b'"}', b"layer-" + seed * 64
        blobs = [self.push_blob(repo, config, token=token), self.push_blob(repo, layer, token=token)]
        body = manifest(config, [layer])
        r = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            data=body,
            headers={"Content-Type": OCI_MANIFEST},
            token=token,
        )
        assert r.status_code == 201, (r.status_code, r.text)
        return r.headers["Docker-Content-Digest"], blobs


def manifest(config: bytes, layers: list[bytes], algorithm: str = "sha256") -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config, algorithm),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha(x, algorithm),
                "size": len(x),
            }
            for x in layers
        ],
    }
    return json.dumps(doc).encode()


def oci_code(r: requests.Response) -> str:
    assert r.headers.get("Content-Type", "").startswith("application/json"), (r.status_code, r.text[:200])
    code: str = r.json()["errors"][0]["code"]
    return code


def _executable() -> str:
    beside = Path(sys.executable).parent / "dockyard-registry"
    found = str(beside) if beside.exists() else shutil.which("dockyard-registry")
    if found is None:
        pytest.fail("dockyard-registry is not installed in this environment (run `make setup`)")
    return found


def start(
    base: Path,
    *flags: str,
    root: Path | None = None,
    nofile: int | None = None,
    mode: str = "none",
    users: dict[str, str] | None = None,
    access: tuple[str, ...] = (),
    timeout: float = 20.0,
) -> Proc:
    """Start the registry under ``base`` with ``flags``; wait until ``/v2/`` answers."""
    base.mkdir(parents=True, exist_ok=True)
    port, grpc = free_port(), f"127.0.0.1:{free_port()}"
    root = root or base / "root"
    argv = [
        _executable(), "serve", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
        "--auth", mode, "--grpc-listen", grpc, "--state-dir", str(base / "state"),
        "--nats-url", f"nats://127.0.0.1:{free_port()}", *flags,
    ]  # fmt: skip
    users = users or {}
    if mode != "none":
        (base / "htpasswd").write_text(
            "".join(
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in users.items()
            )
        )
        argv += ["--htpasswd", str(base / "htpasswd")]
        if access:
            (base / "access").write_text("\n".join(access) + "\n")
            argv += ["--access", str(base / "access")]
    if mode == "token":
        argv += ["--token-secret", TOKEN_SECRET]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    preexec: Callable[[], None] | None = None
    if nofile is not None:
        limit = nofile

        def preexec() -> None:  # soft = hard: the registry cannot raise it past what we allow
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    with (base / "server.log").open("wb") as log_file:
        process = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
        )
    proc = Proc(port, grpc, root, base, process, users, mode)
    deadline = time.monotonic() + timeout
    while not proc.alive():
        if process.poll() is not None:
            pytest.fail(f"dockyard-registry exited with {process.returncode}:\n{proc.log()}")
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"dockyard-registry did not answer within {timeout}s:\n{proc.log()}")
        time.sleep(0.05)
    return proc


def stop(proc: Proc) -> None:
    proc.process.terminate()
    try:
        proc.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.process.kill()
        proc.process.wait(timeout=10)
