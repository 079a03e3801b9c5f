"""The ``oras`` Python client (oras-py) against our registry: chunked uploads, artifacts, referrers.

Proves that oras's chunked upload protocol (POST, PATCH with Content-Range per chunk, PUT ?digest=)
lands byte-exact blobs; that artifacts pushed with oras come back identical through ``oras pull``;
and that an artifact pushed with a ``subject`` is answered with ``OCI-Subject`` and listed by the
Referrers API (``GET /v2/<name>/referrers/<digest>``), with and without an ``artifactType`` filter.
oras-py has no referrers call, so that query goes over plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import oras.client
import oras.oci
import pytest
import requests
from interop_helpers import RegistryServer

pytestmark = pytest.mark.interop

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/vnd.dockyard.test.sbom.v1+json"
SIG_TYPE = "application/vnd.dockyard.test.signature.v1"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Recorder:
    """Records every HTTP exchange oras's requests session makes (method, url, status, headers)."""

    def __init__(self, client: oras.client.OrasClient) -> None:
        self.exchanges: list[requests.Response] = []
        client.session.hooks["response"].append(self._hook)

    def _hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.exchanges.append(response)

    def by_method(self, method: str) -> list[requests.Response]:
        return [r for r in self.exchanges if r.request.method == method]


@pytest.fixture
def oras_client(registry_server: RegistryServer) -> oras.client.OrasClient:
    return oras.client.OrasClient(hostname=registry_server.address, insecure=True)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_oras_chunked_blob_upload(
    oras_client: oras.client.OrasClient, registry_server: RegistryServer, tmp_path: Path
) -> None:
    """``upload_blob(do_chunked=True)``: one PATCH per chunk, ranges contiguous, the blob byte-exact."""
    data = os.urandom(300 * 1024 + 123)  # 300 KiB + a ragged last chunk
    blob = _write(tmp_path / "blob.bin", data)
    layer = oras.oci.NewLayer(str(blob), media_type="application/octet-stream")
    assert layer["digest"] == sha256(data)
    target = f"{registry_server.address}/interop/chunks"
    rec = Recorder(oras_client)

    chunk = 64 * 1024
    response = oras_client.upload_blob(str(blob), target, layer, do_chunked=True, chunk_size=chunk)

    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert response.headers["Location"] == f"/v2/interop/chunks/blobs/{sha256(data)}"
    patches = rec.by_method("PATCH")
    assert len(patches) == -(-len(data) // chunk) == 5
    offset = 0
    for p in patches:
        assert p.status_code == 202, p.text
        sent = int(p.request.headers["Content-Length"])
        assert p.request.headers["Content-Range"] == f"{offset}-{offset + sent - 1}"
        offset += sent
        assert p.headers["Range"] == f"0-{offset - 1}"  # the registry acknowledges every byte so far
        assert p.headers["Location"].startswith("/v2/interop/chunks/blobs/uploads/")
    assert offset == len(data)
    (put,) = rec.by_method("PUT")
    assert parse_qs(urlsplit(put.request.url).query) == {"digest": [sha256(data)]}
    assert not put.request.body  # every byte went in the PATCHes

    got = requests.get(f"{registry_server.url}/v2/interop/chunks/blobs/{sha256(data)}", timeout=30)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Docker-Content-Digest"] == sha256(data)

    # oras asks before uploading; the blob now exists, so a second upload is skipped.
    assert oras_client.blob_exists(layer, oras_client.get_container(target))


def test_oras_chunked_artifact_push_and_pull_are_byte_identical(
    oras_client: oras.client.OrasClient, registry_server: RegistryServer, tmp_path: Path
) -> None:
    """``oras push --chunked`` of a multi-file artifact, then ``oras pull``: same bytes, same digests."""
    src = tmp_path / "src"
    src.mkdir()
    files = {
        "model.bin": os.urandom(200_000),
        "notes.txt": b"dockyard interop\n" * 1000,
        "empty.dat": b"",
    }
    for name, data in files.items():
        _write(src / name, data)
    config = _write(tmp_path / "config.json", json.dumps({"kind": "dockyard-test"}).encode())
    target = f"{registry_server.address}/interop/artifact:v1"
    rec = Recorder(oras_client)

    response = oras_client.push(
        target=target,
        files=[f"{src / name}:application/vnd.dockyard.test.file" for name in files],
        manifest_config=f"{config}:application/vnd.dockyard.test.config.v1+json",
        manifest_annotations={"org.opencontainers.image.description": "interop"},
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=32 * 1024,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    assert len(rec.by_method("PATCH")) >= -(-200_000 // (32 * 1024)) + 1  # model.bin alone takes 7

    # What we store under the tag is the manifest whose digest we answered with.
    digest = response.headers["Docker-Content-Digest"]
    stored = requests.get(
        f"{registry_server.url}/v2/interop/artifact/manifests/v1",
        headers={"Accept": OCI_MANIFEST},
        timeout=30,
    )
    assert stored.headers["Docker-Content-Digest"] == digest == sha256(stored.content)
    manifest = stored.json()
    assert manifest["config"]["digest"] == sha256(config.read_bytes())
    assert {
        (d["annotations"]["org.opencontainers.image.title"], d["digest"], d["size"])
        for d in manifest["layers"]
    } == {(name, sha256(data), len(data)) for name, data in files.items()}

    # oras pull, by tag and by digest: every file byte for byte.
    for ref, out in (
        (target, tmp_path / "by-tag"),
        (f"{registry_server.address}/interop/artifact@{digest}", tmp_path / "by-digest"),
    ):
        pulled = oras_client.pull(target=ref, outdir=str(out))
        assert sorted(Path(p).name for p in pulled) == sorted(files)
        for name, data in files.items():
            assert (out / name).read_bytes() == data
            assert sha256((out / name).read_bytes()) == sha256(data)


def _push_image(client: oras.client.OrasClient, server: RegistryServer, tmp_path: Path) -> tuple[str, int]:
    """An OCI image manifest (image config + one tar layer), pushed with oras; (digest, size)."""
    layer = _write(tmp_path / "layer.tar", os.urandom(4096))
    config = _write(
        tmp_path / "image-config.json",
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256(layer.read_bytes())]},
            }
        ).encode(),
    )
    response = client.push(
        target=f"{server.address}/interop/app:v1",
        files=[f"{layer}:{OCI_LAYER_TAR}"],
        manifest_config=f"{config}:{OCI_IMAGE_CONFIG}",
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    assert "OCI-Subject" not in response.headers
    digest = response.headers["Docker-Content-Digest"]
    body = requests.get(
        f"{server.url}/v2/interop/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST}, timeout=30
    ).content
    assert sha256(body) == digest
    return digest, len(body)


def _referrers(server: RegistryServer, name: str, digest: str, artifact_type: str = "") -> requests.Response:
    params = {"artifactType": artifact_type} if artifact_type else {}
    r = requests.get(f"{server.url}/v2/{name}/referrers/{digest}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith(OCI_INDEX)
    return r


def test_oras_artifacts_with_subject_are_listed_as_referrers(
    oras_client: oras.client.OrasClient, registry_server: RegistryServer, tmp_path: Path
) -> None:
    """Two artifacts refer to an image: OCI-Subject on push, listed, filtered by artifactType, pulled back."""
    server = registry_server
    image_digest, image_size = _push_image(oras_client, server, tmp_path)
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=image_digest, size=image_size)

    # Nothing refers to the image yet: an empty index, not a 404.
    empty = _referrers(server, "interop/app", image_digest).json()
    assert empty == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    # 1. An SBOM pushed with oras push: typed by its config media type (no artifactType field).
    sbom_data = json.dumps({"packages": ["busybox"]}).encode()
    sbom = _write(tmp_path / "sbom.json", sbom_data)
    pushed = oras_client.push(
        target=f"{server.address}/interop/app:sbom",
        files=[f"{sbom}:application/spdx+json"],
        manifest_config=f"{_write(tmp_path / 'sbom-config.json', b'{}')}:{SBOM_TYPE}",
        subject=subject,
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=16,
        quiet=True,
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers.get("OCI-Subject") == image_digest
    sbom_digest = pushed.headers["Docker-Content-Digest"]

    # 2. A signature as an OCI 1.1 artifact: artifactType field, empty config, pushed by digest
    #    with oras's blob and manifest calls.
    sig_data = b"signed-by-dockyard-interop"
    sig = _write(tmp_path / "sig.bin", sig_data)
    container = oras_client.get_container(f"{server.address}/interop/app")
    sig_layer = oras.oci.NewLayer(str(sig), media_type="application/octet-stream")
    assert (
        oras_client.upload_blob(str(sig), container, sig_layer, do_chunked=True, chunk_size=8).status_code
        == 201
    )
    empty_cfg = _write(tmp_path / "empty.json", b"{}")
    empty_desc = {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}
    assert oras_client.upload_blob(str(empty_cfg), container, empty_desc).status_code in (200, 201)
    sig_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG_TYPE,
        "config": empty_desc,
        "layers": [sig_layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": image_size},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }
    sig_bytes = json.dumps(sig_manifest).encode()  # what oras sends (requests' json=)
    by_digest = oras_client.get_container(f"{server.address}/interop/app@{sha256(sig_bytes)}")
    put = oras_client.upload_manifest(sig_manifest, by_digest)
    assert put.status_code == 201, put.text
    assert put.headers.get("OCI-Subject") == image_digest
    sig_digest = put.headers["Docker-Content-Digest"]
    assert sig_digest == sha256(put.request.body)

    # Unfiltered: both, as descriptors carrying the artifact type and annotations.
    index = _referrers(server, "interop/app", image_digest)
    assert "OCI-Filters-Applied" not in index.headers
    listed = {d["digest"]: d for d in index.json()["manifests"]}
    assert set(listed) == {sbom_digest, sig_digest}
    sbom_body = requests.get(
        f"{server.url}/v2/interop/app/manifests/{sbom_digest}", headers={"Accept": OCI_MANIFEST}, timeout=30
    ).content
    assert listed[sbom_digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom_digest,
        "size": len(sbom_body),
        "artifactType": SBOM_TYPE,
    }
    assert listed[sig_digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": sig_digest,
        "size": len(put.request.body),
        "artifactType": SIG_TYPE,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }

    # Filtered by artifactType: only the matching one, and the filter is declared applied.
    for artifact_type, expected in ((SBOM_TYPE, sbom_digest), (SIG_TYPE, sig_digest)):
        filtered = _referrers(server, "interop/app", image_digest, artifact_type)
        assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
        assert [d["digest"] for d in filtered.json()["manifests"]] == [expected]
    none = _referrers(server, "interop/app", image_digest, "application/vnd.nobody.uses.this")
    assert none.json()["manifests"] == []

    # The referrers are real artifacts: oras pulls them back byte for byte.
    out = tmp_path / "pulled-sbom"
    oras_client.pull(target=f"{server.address}/interop/app@{sbom_digest}", outdir=str(out))
    assert (out / "sbom.json").read_bytes() == sbom_data
    out = tmp_path / "pulled-sig"
    oras_client.pull(target=f"{server.address}/interop/app@{sig_digest}", outdir=str(out))
    assert (out / sig_layer["digest"]).read_bytes() == sig_data  # no title annotation: named by digest
    assert (
        oras_client.get_manifest(f"{server.address}/interop/app@{sig_digest}")["subject"]["digest"]
        == image_digest
    )
