"""kill -9 of the registry process mid-upload: nothing partial becomes visible; a retry succeeds."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from interop_helpers import RegistryAuth, start_registry, stop_registry

pytestmark = pytest.mark.interop

SIZE = 32 << 20


def _blobs_are_all_whole(root: Path) -> list[Path]:
    """Every file under blobs/ hashes to its own name (no partial or torn blob is visible)."""
    seen = []
    for path in (root / "blobs" / "sha256").rglob("*"):
        if path.is_file():
            h = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            assert h.hexdigest() == path.name, f"torn blob {path}"
            seen.append(path)
    return seen


def test_kill_9_mid_upload_leaves_nothing_visible_and_a_retry_succeeds(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    server = start_registry(tmp_path / "registry", RegistryAuth())
    try:
        # a monolithic PUT whose body is a third sent when the server dies
        start = server.request("POST", "/v2/crash/app/blobs/uploads/")
        assert start.status_code == 202
        location = start.headers["Location"]
        sock = socket.create_connection((server.host, server.port))
        sep = "&" if "?" in location else "?"
        sock.sendall(
            (
                f"PUT {location}{sep}digest={digest} HTTP/1.1\r\nHost: {server.address}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
            ).encode()
        )
        sock.sendall(data[: SIZE // 3])
        time.sleep(0.5)  # let the server write what it got
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        sock.close()
    finally:
        if server.process.poll() is None:
            stop_registry(server)

    assert _blobs_are_all_whole(server.root) == []

    restarted = start_registry(tmp_path / "registry", RegistryAuth())
    try:
        assert restarted.request("HEAD", f"/v2/crash/app/blobs/{digest}").status_code == 404
        # the client retries from scratch
        retry = restarted.request("POST", f"/v2/crash/app/blobs/uploads/?digest={digest}", data=data)
        assert retry.status_code == 201, retry.text
        fetched = restarted.request("GET", f"/v2/crash/app/blobs/{digest}")
        assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == digest[7:]
        assert [p.name for p in _blobs_are_all_whole(restarted.root)] == [digest[7:]]
    finally:
        stop_registry(restarted)
