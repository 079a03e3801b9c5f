"""Spec features from distribution-spec main, end to end against a real process: tags pushed with a
manifest by digest (``?tag=`` answered with ``OCI-Tag``), and sha512 digests for blobs and
manifests (upload, HEAD, GET, mount, GC)."""

from __future__ import annotations

import grpc
from hostile_helpers import OCI_MANIFEST, Proc, manifest, oci_code, sha

from dockyard.api.registry.v1 import registry_pb2, registry_pb2_grpc


def gc(proc: Proc) -> registry_pb2.GarbageCollectResponse:
    with grpc.insecure_channel(proc.grpc) as ch:
        stub = registry_pb2_grpc.RegistryAdminStub(ch)
        reply: registry_pb2.GarbageCollectResponse = stub.GarbageCollect(
            registry_pb2.GarbageCollectRequest(grace_seconds=0), timeout=60
        )
        return reply


def test_tags_pushed_with_a_manifest_by_digest(registry: Proc) -> None:
    config, layer = b'{"tags":1}', b"tagged layer"
    registry.push_blob("multi", config)
    registry.push_blob("multi", layer)
    body = manifest(config, [layer])
    digest = sha(body)
    headers = {"Content-Type": OCI_MANIFEST}
    r = registry.request(
        "PUT", f"/v2/multi/manifests/{digest}?tag=1.2.3&tag=1.2&tag=latest", data=body, headers=headers
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    announced = [t.strip() for v in r.raw.headers.get_all("OCI-Tag") for t in v.split(",")]
    assert announced == ["1.2.3", "1.2", "latest"]
    assert registry.get("/v2/multi/tags/list").json()["tags"] == ["1.2", "1.2.3", "latest"]
    for tag in ("1.2.3", "latest"):
        got = registry.get(f"/v2/multi/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert got.content == body

    # One bad tag refuses the whole push; nothing moves.
    other = manifest(config, [])
    bad = registry.request(
        "PUT", f"/v2/multi/manifests/{sha(other)}?tag=ok&tag=-bad", data=other, headers=headers
    )
    assert bad.status_code == 400 and oci_code(bad) == "TAG_INVALID"
    assert registry.get("/v2/multi/tags/list").json()["tags"] == ["1.2", "1.2.3", "latest"]
    # ?tag= belongs to pushes by digest.
    by_tag = registry.request("PUT", "/v2/multi/manifests/v1?tag=v2", data=other, headers=headers)
    assert by_tag.status_code == 400 and oci_code(by_tag) == "TAG_INVALID"
    # Too many tags: 414, as the spec allows.
    many = "&".join(f"tag=t{i}" for i in range(101))
    r = registry.request("PUT", f"/v2/multi/manifests/{sha(other)}?{many}", data=other, headers=headers)
    assert r.status_code == 414


def test_sha512_end_to_end(registry: Proc) -> None:
    config, layer, chunked = b'{"alg":"sha512"}', b"sha512 layer " * 1000, b"chunked sha512 " * 3000
    d_config = registry.push_blob("five", config, algorithm="sha512")
    d_layer = registry.push_blob("five", layer, algorithm="sha512")
    # Chunked, announcing the algorithm up front (?digest-algorithm=, spec end-4c).
    r = registry.request("POST", "/v2/five/blobs/uploads/?digest-algorithm=sha512")
    assert r.status_code == 202
    loc = r.headers["Location"]
    half = len(chunked) // 2
    r = registry.request("PATCH", loc, data=chunked[:half], headers={"Content-Range": f"0-{half - 1}"})
    assert r.status_code == 202
    r = registry.request(
        "PUT", f"{r.headers['Location']}?digest={sha(chunked, 'sha512')}", data=chunked[half:]
    )
    assert r.status_code == 201, r.text
    d_chunked = r.headers["Docker-Content-Digest"]
    assert d_chunked == sha(chunked, "sha512")
    # A wrong sha512 is refused and stores nothing.
    wrong = "sha512:" + "0" * 128
    assert registry.request("POST", f"/v2/five/blobs/uploads/?digest={wrong}", data=b"x").status_code == 400

    for d, data in ((d_config, config), (d_layer, layer), (d_chunked, chunked)):
        head = registry.request("HEAD", f"/v2/five/blobs/{d}")
        assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == d
        assert int(head.headers["Content-Length"]) == len(data)
        assert registry.get(f"/v2/five/blobs/{d}").content == data

    body = manifest(config, [layer], algorithm="sha512")
    d_manifest = sha(body, "sha512")
    r = registry.request(
        "PUT", f"/v2/five/manifests/{d_manifest}?tag=v1", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d_manifest
    got = registry.get(f"/v2/five/manifests/{d_manifest}", headers={"Accept": OCI_MANIFEST})
    assert got.content == body and got.headers["Docker-Content-Digest"] == d_manifest
    assert registry.get("/v2/five/manifests/v1", headers={"Accept": OCI_MANIFEST}).content == body

    # Mount by sha512 into another repository.
    r = registry.request("POST", f"/v2/six/blobs/uploads/?mount={d_layer}&from=five")
    assert r.status_code == 201
    assert registry.get(f"/v2/six/blobs/{d_layer}").content == layer

    # GC keeps what the sha512 manifest references, frees the unreferenced chunked blob...
    swept = set(gc(registry).swept)
    assert d_chunked in swept and not {d_config, d_layer, d_manifest} & swept
    assert registry.get(f"/v2/five/blobs/{d_layer}").content == layer
    # ...and, once the manifest is deleted, its sha512 blobs too.
    assert registry.request("DELETE", f"/v2/five/manifests/{d_manifest}").status_code == 202
    swept = set(gc(registry).swept)
    assert {d_config, d_layer, d_manifest} <= swept
    assert registry.get(f"/v2/six/blobs/{d_layer}").status_code == 404
    assert registry.alive()
