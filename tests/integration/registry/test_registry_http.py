"""The OCI Distribution HTTP API against a real server: what the conformance suite checks, and more."""

from __future__ import annotations

import json
import os

from registry_http_support import Server, digest_of, manifest_for, oci_code, push_blob, push_image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


async def test_base_endpoint_and_api_version_header(server: Server) -> None:
    async with server.session.get(f"{server.url}/v2/") as r:
        assert r.status == 200
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_monolithic_push_then_pull_and_head(server: Server) -> None:
    data = os.urandom(300_000)
    d = digest_of(data)
    async with server.session.post(f"{server.url}/v2/a/b/blobs/uploads/?digest={d}", data=data) as r:
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/a/b/blobs/{d}"
        assert r.headers["Docker-Content-Digest"] == d
    async with server.session.get(f"{server.url}/v2/a/b/blobs/{d}") as r:
        assert r.status == 200 and await r.read() == data
        assert r.headers["Docker-Content-Digest"] == d
    async with server.session.head(f"{server.url}/v2/a/b/blobs/{d}") as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)


async def test_post_then_put_with_body(server: Server) -> None:
    async with server.session.post(f"{server.url}/v2/r/blobs/uploads/") as r:
        assert r.status == 202
        location = r.headers["Location"]
        assert r.headers["Range"] == "0-0" and r.headers["Docker-Upload-UUID"] in location
    data = b"single put"
    async with server.session.put(f"{server.url}{location}?digest={digest_of(data)}", data=data) as r:
        assert r.status == 201
    async with server.session.get(f"{server.url}/v2/r/blobs/{digest_of(data)}") as r:
        assert await r.read() == data


async def test_chunked_upload_status_and_out_of_order_416(server: Server) -> None:
    data = os.urandom(5000)
    async with server.session.post(f"{server.url}/v2/r/blobs/uploads/") as r:
        loc = r.headers["Location"]
    headers = {"Content-Range": "0-1999", "Content-Type": "application/octet-stream"}
    async with server.session.patch(f"{server.url}{loc}", data=data[:2000], headers=headers) as r:
        assert r.status == 202 and r.headers["Range"] == "0-1999"
        loc = r.headers["Location"]
    # out of order: skips bytes
    async with server.session.patch(
        f"{server.url}{loc}", data=data[3000:], headers={"Content-Range": "3000-4999"}
    ) as r:
        assert r.status == 416 and r.headers["Range"] == "0-1999"
        assert await oci_code(r) == "BLOB_UPLOAD_INVALID"
    # overlapping retry of the first chunk
    async with server.session.patch(
        f"{server.url}{loc}", data=data[:2000], headers={"Content-Range": "0-1999"}
    ) as r:
        assert r.status == 416
    async with server.session.get(f"{server.url}{loc}") as r:
        assert r.status == 204 and r.headers["Range"] == "0-1999" and r.headers["Location"] == loc
    async with server.session.patch(
        f"{server.url}{loc}", data=data[2000:], headers={"Content-Range": "2000-4999"}
    ) as r:
        assert r.status == 202 and r.headers["Range"] == "0-4999"
    async with server.session.put(f"{server.url}{loc}?digest={digest_of(data)}") as r:
        assert r.status == 201
    async with server.session.get(f"{server.url}/v2/r/blobs/{digest_of(data)}") as r:
        assert await r.read() == data
    async with server.session.get(f"{server.url}{loc}") as r:
        assert r.status == 404 and await oci_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_streamed_patch_without_content_range(server: Server) -> None:
    data = os.urandom(3 << 20)  # several stream chunks

    async def gen():
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    async with server.session.post(f"{server.url}/v2/r/blobs/uploads/") as r:
        loc = r.headers["Location"]
    async with server.session.patch(f"{server.url}{loc}", data=gen()) as r:  # chunked transfer encoding
        assert r.status == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    async with server.session.put(f"{server.url}{loc}?digest={digest_of(data)}") as r:
        assert r.status == 201


async def test_range_requests(server: Server) -> None:
    data = bytes(range(256)) * 10
    d = await push_blob(server, "r", data)
    async with server.session.get(f"{server.url}/v2/r/blobs/{d}", headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206 and await r.read() == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    async with server.session.get(f"{server.url}/v2/r/blobs/{d}", headers={"Range": "bytes=-5"}) as r:
        assert r.status == 206 and await r.read() == data[-5:]
    async with server.session.get(f"{server.url}/v2/r/blobs/{d}", headers={"Range": "bytes=99999-"}) as r:
        assert r.status == 416


async def test_cross_repo_and_anonymous_mount(server: Server) -> None:
    d = await push_blob(server, "src", b"layer to mount")
    async with server.session.post(f"{server.url}/v2/dst/blobs/uploads/?mount={d}&from=src") as r:
        assert r.status == 201 and r.headers["Location"] == f"/v2/dst/blobs/{d}"
    async with server.session.post(f"{server.url}/v2/anon/blobs/uploads/?mount={d}") as r:
        assert r.status == 201
    missing = digest_of(b"nobody has me")
    async with server.session.post(f"{server.url}/v2/dst/blobs/uploads/?mount={missing}&from=src") as r:
        assert r.status == 202 and "/blobs/uploads/" in r.headers["Location"]  # falls back to a session
    async with server.session.get(f"{server.url}/v2/anon/blobs/{d}") as r:
        assert await r.read() == b"layer to mount"
    assert any(e.nats_subject == "dockyard.registry.blob_mounted" for e in server.publisher.events)


async def test_manifests_by_tag_and_digest(server: Server) -> None:
    digest, body = await push_image(server, "app", "v1")
    assert digest == digest_of(body)
    for ref in ("v1", digest):
        async with server.session.get(f"{server.url}/v2/app/manifests/{ref}") as r:
            assert r.status == 200 and await r.read() == body
            assert r.headers["Content-Type"] == OCI_MANIFEST
            assert r.headers["Docker-Content-Digest"] == digest
        async with server.session.head(f"{server.url}/v2/app/manifests/{ref}") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(body)
    async with server.session.put(f"{server.url}/v2/app/manifests/{digest}", data=body) as r:
        assert r.status == 201 and r.headers["Location"] == f"/v2/app/manifests/{digest}"
    # content negotiation: a client that names only Docker types cannot get an OCI manifest by tag...
    docker_only = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    async with server.session.get(f"{server.url}/v2/app/manifests/v1", headers=docker_only) as r:
        assert r.status == 404 and await oci_code(r) == "MANIFEST_UNKNOWN"
    # ...but by digest it asked for exact bytes, and gets them
    async with server.session.get(f"{server.url}/v2/app/manifests/{digest}", headers=docker_only) as r:
        assert r.status == 200 and await r.read() == body


async def test_manifest_errors(server: Server) -> None:
    await push_blob(server, "app", b"{}")
    missing_layer = manifest_for(b"{}", [b"never uploaded"])
    async with server.session.put(f"{server.url}/v2/app/manifests/v1", data=missing_layer) as r:
        assert r.status == 400 and await oci_code(r) == "MANIFEST_BLOB_UNKNOWN"
    async with server.session.put(f"{server.url}/v2/app/manifests/v1", data=b"{not json") as r:
        assert r.status == 400 and await oci_code(r) == "MANIFEST_INVALID"
    body = manifest_for(b"{}", [])
    async with server.session.put(f"{server.url}/v2/app/manifests/{digest_of(b'x')}", data=body) as r:
        assert r.status == 400 and await oci_code(r) == "DIGEST_INVALID"
    async with server.session.get(f"{server.url}/v2/app/manifests/nope") as r:
        assert r.status == 404 and await oci_code(r) == "MANIFEST_UNKNOWN"
    async with server.session.get(f"{server.url}/v2/ghost/manifests/v1") as r:
        assert r.status == 404 and await oci_code(r) == "NAME_UNKNOWN"


async def test_tags_list_pagination_with_link(server: Server) -> None:
    for tag in ["d", "a", "c", "b", "e"]:
        await push_image(server, "app", tag, seed=tag.encode())
    async with server.session.get(f"{server.url}/v2/app/tags/list") as r:
        assert (await r.json())["tags"] == ["a", "b", "c", "d", "e"]
    seen, url = [], f"{server.url}/v2/app/tags/list?n=2"
    while url:
        async with server.session.get(url) as r:
            body = await r.json()
            seen += body["tags"]
            assert len(body["tags"]) <= 2 and body["name"] == "app"
            link = r.headers.get("Link")
            url = server.url + link.split(";")[0].strip("<>") if link else ""
    assert seen == ["a", "b", "c", "d", "e"]
    async with server.session.get(f"{server.url}/v2/app/tags/list?n=2&last=b") as r:
        assert (await r.json())["tags"] == ["c", "d"]
    async with server.session.get(f"{server.url}/v2/app/tags/list?n=x") as r:
        assert r.status == 400
    async with server.session.get(f"{server.url}/v2/ghost/tags/list") as r:
        assert r.status == 404 and await oci_code(r) == "NAME_UNKNOWN"


async def test_catalog_pagination(server: Server) -> None:
    for name in ["c", "a/x", "b"]:
        await push_blob(server, name, name.encode())
    async with server.session.get(f"{server.url}/v2/_catalog?n=2") as r:
        assert (await r.json())["repositories"] == ["a/x", "b"]
        assert r.headers["Link"] == '</v2/_catalog?n=2&last=b>; rel="next"'
    async with server.session.get(f"{server.url}/v2/_catalog?n=2&last=b") as r:
        assert (await r.json())["repositories"] == ["c"] and "Link" not in r.headers


async def test_referrers_with_artifact_type_filter_and_oci_subject(server: Server) -> None:
    subject, body = await push_image(server, "app", "v1")
    empty = b"{}"
    await push_blob(server, "app", empty)
    pushed = {}
    for art in ("application/vnd.example.sig", "application/vnd.example.sbom"):
        doc = json.loads(manifest_for(empty, []))
        doc["config"]["mediaType"] = "application/vnd.oci.empty.v1+json"
        doc["artifactType"] = art
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(body)}
        raw = json.dumps(doc).encode()
        async with server.session.put(f"{server.url}/v2/app/manifests/{digest_of(raw)}", data=raw) as r:
            assert r.status == 201 and r.headers["OCI-Subject"] == subject
        pushed[art] = digest_of(raw)
    async with server.session.get(f"{server.url}/v2/app/referrers/{subject}") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
        index = await r.json(content_type=None)
        assert {m["digest"] for m in index["manifests"]} == set(pushed.values())
        assert "OCI-Filters-Applied" not in r.headers
    url = f"{server.url}/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig"
    async with server.session.get(url) as r:
        index = await r.json(content_type=None)
        assert [m["digest"] for m in index["manifests"]] == [pushed["application/vnd.example.sig"]]
        assert index["manifests"][0]["artifactType"] == "application/vnd.example.sig"
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
    async with server.session.get(f"{server.url}/v2/app/referrers/{digest_of(b'none')}") as r:
        assert r.status == 200 and (await r.json(content_type=None))["manifests"] == []


async def test_deletes(server: Server) -> None:
    digest, _ = await push_image(server, "app", "v1")
    async with server.session.delete(f"{server.url}/v2/app/manifests/v1") as r:  # by tag
        assert r.status == 202
    async with server.session.get(f"{server.url}/v2/app/manifests/{digest}") as r:
        assert r.status == 200
    async with server.session.delete(f"{server.url}/v2/app/manifests/{digest}") as r:
        assert r.status == 202
    async with server.session.get(f"{server.url}/v2/app/manifests/{digest}") as r:
        assert r.status == 404 and await oci_code(r) == "MANIFEST_UNKNOWN"
    d = await push_blob(server, "app", b"blob")
    async with server.session.delete(f"{server.url}/v2/app/blobs/{d}") as r:
        assert r.status == 202
    async with server.session.get(f"{server.url}/v2/app/blobs/{d}") as r:
        assert r.status == 404 and await oci_code(r) == "BLOB_UNKNOWN"
    async with server.session.post(f"{server.url}/v2/app/blobs/uploads/") as r:
        loc = r.headers["Location"]
    async with server.session.delete(f"{server.url}{loc}") as r:
        assert r.status == 204
    async with server.session.get(f"{server.url}{loc}") as r:
        assert r.status == 404 and await oci_code(r) == "BLOB_UPLOAD_UNKNOWN"
    subjects = [e.nats_subject for e in server.publisher.events]
    assert "dockyard.registry.tag_deleted" in subjects and "dockyard.registry.manifest_deleted" in subjects


async def test_error_codes(server: Server) -> None:
    cases = [
        ("GET", "/v2/Bad/Name/tags/list", 400, "NAME_INVALID"),
        ("GET", "/v2/a/blobs/sha256:short", 400, "DIGEST_INVALID"),
        ("GET", "/v2/a/blobs/md5:abc", 400, "DIGEST_INVALID"),
        ("GET", f"/v2/a/blobs/{digest_of(b'?')}", 404, "BLOB_UNKNOWN"),
        ("GET", "/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef", 404, "BLOB_UPLOAD_UNKNOWN"),
        (
            "PUT",
            "/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef?digest=" + digest_of(b""),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        ("POST", "/v2/a/manifests/v1", 405, "UNSUPPORTED"),
        ("GET", "/v2/a/referrers/nope", 400, "DIGEST_INVALID"),
    ]
    for method, path, status, code in cases:
        async with server.session.request(method, server.url + path) as r:
            assert (r.status, await oci_code(r)) == (status, code), path
            assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_put_without_digest_and_wrong_digest_store_nothing(server: Server) -> None:
    async with server.session.post(f"{server.url}/v2/r/blobs/uploads/") as r:
        loc = r.headers["Location"]
    async with server.session.put(f"{server.url}{loc}", data=b"abc") as r:
        assert r.status == 400 and await oci_code(r) == "DIGEST_INVALID"
    async with server.session.post(
        f"{server.url}/v2/r/blobs/uploads/?digest={digest_of(b'other')}", data=b"abc"
    ) as r:
        assert r.status == 400 and await oci_code(r) == "DIGEST_INVALID"
    assert server.stored_blobs() == []
    assert server.registry.active_uploads() == 1  # only the explicit session, the monolithic one is gone
