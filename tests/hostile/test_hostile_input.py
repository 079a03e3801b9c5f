"""Input that used to earn a 500 (or a plain-text 404, or a 206 for nothing) gets the right 4xx in
OCI JSON; refused uploads leave no session behind, and open sessions per repository are capped."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_helpers import OCI_MANIFEST, Proc, oci_code, start, stop


def raw_get(proc: Proc, path: bytes) -> tuple[int, bytes, bytes]:
    """GET ``path`` byte for byte (requests would re-quote it); (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def test_pagination_parameters(registry: Proc) -> None:
    registry.push_image("pages", "v1", b"a")
    for path in ("/v2/pages/tags/list?n=0", "/v2/_catalog?n=0"):
        r = registry.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "Link" not in r.headers
        assert next(iter(v for k, v in r.json().items() if k in ("tags", "repositories"))) == []
    for path in ("/v2/pages/tags/list?n=%C2%B2", "/v2/_catalog?n=%C2%B2", "/v2/_catalog?n=-1"):
        r = registry.get(path)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert oci_code(r) == "UNSUPPORTED"
    assert registry.get("/v2/pages/tags/list?n=1").json()["tags"] == ["v1"]


def test_deeply_nested_manifest_is_invalid_not_a_crash(registry: Proc) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    r = registry.request("PUT", "/v2/deep/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400, r.text[:300]
    assert oci_code(r) == "MANIFEST_INVALID"
    assert registry.get("/v2/deep/tags/list").status_code == 404
    assert registry.alive()


@pytest.mark.parametrize(
    "path, status, code",
    [
        (b"/v2/a%0Ab/tags/list", 400, "NAME_INVALID"),
        (b"/v2/ab%0A/tags/list", 400, "NAME_INVALID"),
        (b"/v2/ab%0A/manifests/v1", 400, "NAME_INVALID"),
        (b"/v2/ab/manifests/v1%0A", 404, "NAME_UNKNOWN"),
        (b"/v2/ab/blobs/sha256:" + b"a" * 64 + b"%0A", 400, "DIGEST_INVALID"),
        (b"/v2/ab/blobs/uploads/" + b"a" * 32 + b"%0A", 404, "BLOB_UPLOAD_UNKNOWN"),
    ],
)
def test_newlines_in_names_and_references(registry: Proc, path: bytes, status: int, code: str) -> None:
    got, head, body = raw_get(registry, path)
    assert got == status, (path, head, body[:200])
    assert b"application/json" in head.lower()
    assert code.encode() in body
    assert list((registry.root / "repositories").iterdir()) == []


def test_unsatisfiable_ranges(registry: Proc) -> None:
    data = bytes(range(256)) * 4
    d = registry.push_blob("ranges", data)
    url = f"/v2/ranges/blobs/{d}"
    for bad in ("bytes=-0", f"bytes={len(data)}-", "bytes=5-2", "bytes=", "bytes=x-y"):
        r = registry.get(url, headers={"Range": bad})
        assert r.status_code == 416, (bad, r.status_code, len(r.content))
        assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    ok = registry.get(url, headers={"Range": "bytes=-10"})
    assert ok.status_code == 206 and ok.content == data[-10:]
    ok = registry.get(url, headers={"Range": "bytes=10-19"})
    assert ok.status_code == 206 and ok.content == data[10:20]
    assert registry.get(url).content == data


def sessions(proc: Proc) -> list[str]:
    return sorted(p.name for p in (proc.root / "uploads").iterdir())


def test_refused_post_leaves_no_session(registry: Proc) -> None:
    for query in (
        "digest=sha256:bad",
        "digest=md5:" + "a" * 32,
        "mount=sha256:bad",
        "digest-algorithm=md5",
        "digest=sha256:" + "0" * 64,  # well-formed, but not what the body hashes to
    ):
        r = registry.request("POST", f"/v2/leak/blobs/uploads/?{query}", data=b"some bytes")
        assert r.status_code == 400, (query, r.status_code, r.text)
        assert oci_code(r) == "DIGEST_INVALID"
        assert sessions(registry) == [], query
    assert registry.alive()


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Proc]:
    proc = start(tmp_path / "registry", "--max-uploads-per-repository", "5")
    try:
        yield proc
    finally:
        stop(proc)


def test_open_sessions_are_capped_per_repository(capped: Proc) -> None:
    locations = []
    for _ in range(5):
        r = capped.request("POST", "/v2/busy/blobs/uploads/")
        assert r.status_code == 202
        locations.append(r.headers["Location"])
    r = capped.request("POST", "/v2/busy/blobs/uploads/")
    assert r.status_code == 429, r.text
    assert oci_code(r) == "TOOMANYREQUESTS"
    assert "open upload sessions" in r.json()["errors"][0]["message"]
    assert int(r.headers["Retry-After"]) > 0
    # A monolithic push to the full repository is refused the same way, and stores nothing.
    assert (
        capped.request("POST", "/v2/busy/blobs/uploads/?digest=sha256:" + "1" * 64, data=b"x").status_code
        == 429
    )
    assert len(sessions(capped)) == 5
    # Other repositories are not affected; cancelling a session frees its slot.
    capped.push_blob("other", b"fine")
    assert capped.request("DELETE", locations[0]).status_code == 204
    assert capped.request("POST", "/v2/busy/blobs/uploads/").status_code == 202
    # Finishing one frees its slot too.
    r = capped.request("PUT", locations[1] + "?digest=" + __import__("hostile_helpers").sha(b""), data=b"")
    assert r.status_code == 201, r.text
    assert capped.request("POST", "/v2/busy/blobs/uploads/").status_code == 202
    assert capped.request("POST", "/v2/busy/blobs/uploads/").status_code == 429
