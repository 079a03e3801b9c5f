"""Hostile and broken clients: raw sockets that lie, truncate and traverse. The server must answer
a clean 4xx (or just drop a connection the client itself broke), store nothing, and stay alive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from registry_http_support import Server, digest_of, oci_code, push_blob, start_server


async def raw(server: Server, request: bytes, *, half_close: bool = True, timeout: float = 5) -> bytes:
    """Send bytes as-is on a fresh connection; return everything the server answers."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    if half_close:
        writer.write_eof()
    received = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), max(deadline - loop.time(), 0.01)):
            received += chunk
    except (ConnectionError, TimeoutError):
        pass  # keep what arrived before the server closed or we gave up
    finally:
        writer.close()
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.") else 0


async def alive(server: Server) -> None:
    async with server.session.get(f"{server.url}/v2/") as r:
        assert r.status == 200


async def upload_location(server: Server) -> str:
    async with server.session.post(f"{server.url}/v2/r/blobs/uploads/") as r:
        return r.headers["Location"]


async def test_path_traversal_names_rejected(server: Server) -> None:
    for path in [
        b"/v2/../../etc/passwd/tags/list",
        b"/v2/a/%2e%2e/%2e%2e/etc/tags/list",
        b"/v2/a/..%2f..%2fetc/tags/list",
        b"/v2/a/b%00/tags/list",
        b"/v2/_catalog/../a/tags/list",
        b"/v2/a/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd",
        b"/v2/a/blobs/uploads/..%2f..%2fblobs",
    ]:
        request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        resp = await raw(server, request, half_close=False)
        assert 400 <= status_of(resp) < 500, (path, resp[:300])
    assert list(server.registry.storage.walk("repositories")) == []
    await alive(server)


async def test_lying_content_length_leaves_nothing(server: Server) -> None:
    data = b"x" * 100
    d = digest_of(b"x" * 1000)
    head = f"POST /v2/r/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    await raw(server, head.encode() + data)  # says 1000, sends 100, half-closes
    await asyncio.sleep(0.2)
    assert server.stored_blobs() == []
    assert server.registry.active_uploads() == 0
    await alive(server)


async def test_truncated_patch_rolls_back_the_chunk(server: Server) -> None:
    loc = await upload_location(server)
    async with server.session.patch(
        f"{server.url}{loc}", data=b"a" * 10, headers={"Content-Range": "0-9"}
    ) as r:
        assert r.status == 202
    head = f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: 10-1009\r\nContent-Length: 1000\r\n\r\n"
    await raw(server, head.encode() + b"b" * 300)
    await asyncio.sleep(0.2)
    async with server.session.get(f"{server.url}{loc}") as r:
        assert r.status == 204 and r.headers["Range"] == "0-9"  # the broken chunk is gone
    async with server.session.patch(
        f"{server.url}{loc}", data=b"c" * 5, headers={"Content-Range": "10-14"}
    ) as r:
        assert r.status == 202
    async with server.session.put(f"{server.url}{loc}?digest={digest_of(b'a' * 10 + b'c' * 5)}") as r:
        assert r.status == 201


async def test_truncated_chunked_encoding(server: Server) -> None:
    loc = await upload_location(server)
    head = f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    await raw(server, head.encode() + b"5\r\nhello\r\nZZ-not-hex\r\n")
    await asyncio.sleep(0.2)
    async with server.session.get(f"{server.url}{loc}") as r:
        assert r.headers["Range"] == "0-0"
    await alive(server)


async def test_content_range_disagreeing_with_length(server: Server) -> None:
    loc = await upload_location(server)
    async with server.session.patch(
        f"{server.url}{loc}", data=b"12345", headers={"Content-Range": "0-99"}
    ) as r:
        assert r.status == 400 and await oci_code(r) == "BLOB_UPLOAD_INVALID"
    async with server.session.patch(
        f"{server.url}{loc}", data=b"12345", headers={"Content-Range": "garbage"}
    ) as r:
        assert r.status == 400
    async with server.session.get(f"{server.url}{loc}") as r:
        assert r.headers["Range"] == "0-0"


async def test_short_content_length_on_monolithic_upload(server: Server) -> None:
    # Content-Length smaller than the body: the rest is garbage where a request line should be.
    d = digest_of(b"full body")
    req = f"POST /v2/r/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nfull body"
    resp = await raw(server, req.encode(), half_close=False, timeout=2)
    assert status_of(resp) == 400
    assert server.stored_blobs() == []
    await alive(server)


async def test_oversized_manifest_is_413_and_not_read(server: Server) -> None:
    head = b"PUT /v2/r/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n"
    resp = await raw(server, head + b"{" * 1000, half_close=False, timeout=3)
    assert status_of(resp) == 413
    await alive(server)


async def test_malformed_digests_and_manifests(server: Server) -> None:
    for bad in ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha1:" + "a" * 40, "sha256", "nodigest"]:
        async with server.session.post(f"{server.url}/v2/r/blobs/uploads/?digest={bad}", data=b"x") as r:
            assert r.status == 400 and await oci_code(r) == "DIGEST_INVALID", bad
    for body in [
        b"",
        b"null",
        b'{"schemaVersion":2,"layers":"nope"}',
        b"\xff\xfe",
        b'{"schemaVersion":2}' * 3,
    ]:
        async with server.session.put(f"{server.url}/v2/r/manifests/v1", data=body) as r:
            assert r.status == 400 and await oci_code(r) == "MANIFEST_INVALID", body
    assert server.stored_blobs() == []
    await alive(server)


async def test_wrong_size_in_descriptor(server: Server) -> None:
    import json

    d = await push_blob(server, "r", b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 999},
        "layers": [],
    }
    async with server.session.put(f"{server.url}/v2/r/manifests/v1", data=json.dumps(doc).encode()) as r:
        assert r.status == 400 and await oci_code(r) == "MANIFEST_INVALID"


async def test_a_stalled_body_is_dropped_and_others_are_served_meanwhile(tmp_path: Path) -> None:
    runner, srv = await start_server(tmp_path, body_idle_timeout=0.5)
    try:
        loc = await upload_location(srv)
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        head = f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: 0-999\r\nContent-Length: 1000\r\n\r\n"
        writer.write(head.encode() + b"s" * 100)  # then nothing: a slow or stuck client
        await writer.drain()
        await alive(srv)  # the stalled upload does not block anyone else
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert b" 400 " in status_line
        body = await asyncio.wait_for(reader.read(4096), 10)
        assert b"BLOB_UPLOAD_INVALID" in body
        writer.close()
        async with srv.session.get(f"{srv.url}{loc}") as r:
            assert r.status == 204 and r.headers["Range"] == "0-0"  # its bytes are gone
        assert srv.stored_blobs() == []
    finally:
        await srv.session.close()
        await runner.cleanup()
