"""A full disk is the server's condition: 507 with an OCI error body, nothing half-stored, reads
still served, writes working again once space is freed; Info reports the free space.

Before the fix, ENOSPC while a body streamed in answered 400 BLOB_UPLOAD_INVALID ("request body
unreadable: OSError", so clients did not retry) and, with the disk at 100 %, POST and manifest
PUT answered 500. The storage root here is a real 4 MiB tmpfs the test mounts (needs root, as CI).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hostile_helpers import OCI_MANIFEST, Proc, manifest, oci_code, sha, start, stop

from dockyard.api.system.v1 import system_pb2, system_pb2_grpc

MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path, leave: int) -> None:
    """Grow ``path`` until the filesystem has fewer than ``leave`` bytes free (or none at all)."""
    st = os.statvfs(path.parent)
    want = st.f_bavail * st.f_frsize - leave
    with path.open("ab") as fh, contextlib.suppress(OSError):  # ENOSPC: as full as it gets
        while want > 0:
            n = min(want, 256 << 10)
            fh.write(b"\0" * n)
            fh.flush()
            want -= n


def free_bytes(proc: Proc) -> int:
    with grpc.insecure_channel(proc.grpc) as ch:
        info = system_pb2_grpc.SystemStub(ch).Info(system_pb2.InfoRequest(), timeout=10)
    assert int(info.details["storage_total_bytes"]) > 3 * MIB
    return int(info.details["storage_free_bytes"])


def assert_full(r: object, what: str) -> None:
    import requests

    assert isinstance(r, requests.Response)
    assert r.status_code == 507, (what, r.status_code, r.text)
    assert oci_code(r) == "UNAVAILABLE"
    assert "storage is full" in r.json()["errors"][0]["message"]
    assert int(r.headers["Retry-After"]) > 0


def test_full_disk_is_507_reads_go_on_and_writes_resume(small_disk: Path, tmp_path: Path) -> None:
    proc = start(tmp_path / "registry", root=small_disk / "root")
    filler = small_disk / "filler"
    try:
        digest, blobs = proc.push_image("keep", "v1", b"k")
        kept = {b: proc.get(f"/v2/keep/blobs/{b}").content for b in blobs}
        big = os.urandom(MIB)

        # 1. Space runs out while a body streams in: monolithic POST, then a chunk of a session.
        fill(filler, leave=256 << 10)
        assert free_bytes(proc) < 512 << 10
        assert_full(proc.request("POST", f"/v2/app/blobs/uploads/?digest={sha(big)}", data=big), "POST body")
        assert sorted((proc.root / "uploads").iterdir()) == []  # the monolithic session is gone
        session = proc.request("POST", "/v2/app/blobs/uploads/")
        assert session.status_code == 202
        loc = session.headers["Location"]
        assert_full(proc.request("PATCH", loc, data=big), "PATCH body")
        assert proc.get(loc).headers["Range"] == "0-0"  # the chunk was rolled back, session kept

        # 2. The disk at 100 %: new sessions and manifest pushes.
        fill(filler, leave=0)
        assert_full(proc.request("POST", "/v2/app/blobs/uploads/"), "POST session")
        assert_full(proc.request("POST", f"/v2/app/blobs/uploads/?digest={sha(b'x')}", data=b"x"), "POST")
        body = manifest(b'{"seed":"k"}', [b"layer-" + b"k" * 64])
        put = proc.request("PUT", "/v2/keep/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert_full(put, "manifest PUT")

        # 3. Reads go on, byte for byte.
        r = proc.get("/v2/keep/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        for b, data in kept.items():
            assert proc.get(f"/v2/keep/blobs/{b}").content == data
        assert proc.get("/v2/keep/tags/list").json()["tags"] == ["v1"]

        # 4. Space freed: the kept session resumes, pushes work, nothing was lost.
        filler.unlink()
        assert free_bytes(proc) > 3 * MIB
        assert proc.request("PATCH", loc, data=big).status_code == 202
        assert proc.request("PUT", f"{loc}?digest={sha(big)}").status_code == 201
        assert proc.get(f"/v2/app/blobs/{sha(big)}").content == big
        assert (
            proc.request(
                "PUT", "/v2/keep/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST}
            ).status_code
            == 201
        )
        assert sorted(proc.get("/v2/keep/tags/list").json()["tags"]) == ["v1", "v2"]
        assert "internal error" not in proc.log()
        assert proc.alive()
    finally:
        stop(proc)
