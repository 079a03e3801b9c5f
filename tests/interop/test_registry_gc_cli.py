"""`dockyard-registry gc`: online through the running server, offline when none runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from interop_helpers import RegistryAuth, RegistryServer, _registry_executable, start_registry, stop_registry

pytestmark = pytest.mark.interop


def _orphan_blob(server: RegistryServer) -> str:
    """Push a blob no manifest references; return its digest."""
    data = os.urandom(4096)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reply = server.request("POST", f"/v2/gc/app/blobs/uploads/?digest={digest}", data=data)
    assert reply.status_code == 201, reply.text
    return digest


def _gc(server: RegistryServer, *args: str) -> dict[str, object]:
    assert server.state_dir is not None
    result = subprocess.run(
        [_registry_executable(), "gc", "--root", str(server.root), "--state-dir", str(server.state_dir),
         "--grpc-listen", server.grpc_address, "--grace", "0", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_gc_goes_through_the_running_server_and_offline_without_one(tmp_path: Path) -> None:
    server = start_registry(tmp_path / "registry", RegistryAuth())
    try:
        digest = _orphan_blob(server)
        dry = _gc(server, "--dry-run")
        assert dry == {
            "mode": "online",
            "dry_run": True,
            "marked": 0,
            "deleted_blobs": 1,
            "freed_bytes": 4096,
        }
        assert server.request("HEAD", f"/v2/gc/app/blobs/{digest}").status_code == 200
        done = _gc(server)
        assert done["mode"] == "online" and done["deleted_blobs"] == 1
        assert server.request("HEAD", f"/v2/gc/app/blobs/{digest}").status_code == 404
        second = _orphan_blob(server)
    finally:
        stop_registry(server)

    offline = _gc(server)
    assert offline["mode"] == "offline" and offline["deleted_blobs"] == 1
    assert not (server.root / "blobs" / "sha256" / second.removeprefix("sha256:")).exists()
