"""Interop with a real client: skopeo against a real ``dockyard-registry serve`` (conftest's fixture).

Images are generated here (random tar.gz layers in a hand-written OCI layout); no network needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from interop_helpers import RegistryAuth, RegistryServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed"),
]


@pytest.fixture
def registry(registry_server: RegistryServer) -> str:
    return registry_server.address


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_layout(layout: Path, tag: str, layers: int = 2, layer_size: int = 512 * 1024) -> None:
    """An OCI image layout with ``layers`` random gzip'd tar layers, tagged ``tag``."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diff_ids = [], []
    for i in range(layers):
        tar_bytes = io.BytesIO()
        with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
            payload = os.urandom(layer_size)
            info = tarfile.TarInfo(f"file{i}.bin")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        raw = tar_bytes.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        descs.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, gzip.compress(raw))}
        )
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(layout, json.dumps(config).encode()),
        },
        "layers": descs,
    }
    mdesc = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **mdesc,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def blob_files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def test_copy_roundtrip_is_byte_identical(tmp_path: Path, registry: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    make_layout(src, "v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{registry}/interop/app:v1")
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/interop/app:v1", f"oci:{out}:v1")
    assert blob_files(src) == blob_files(out)  # every blob, manifest included, byte for byte


def test_inspect_list_tags_delete(tmp_path: Path, registry: str) -> None:
    src = tmp_path / "src"
    make_layout(src, "v1", layers=1)
    for tag in ("v1", "v2"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{registry}/interop/app:{tag}")
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/interop/app:v1"))
    manifest_digest = inspect["Digest"]
    assert manifest_digest.removeprefix("sha256:") in blob_files(src)
    assert sorted(inspect["RepoTags"]) == ["v1", "v2"]
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{registry}/interop/app"))
    assert sorted(tags["Tags"]) == ["v1", "v2"]
    skopeo("delete", "--tls-verify=false", f"docker://{registry}/interop/app@{manifest_digest}")
    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/interop/app:v1"],
        capture_output=True,
    )
    assert result.returncode != 0


def test_cross_repo_copy_mounts(tmp_path: Path, registry: str) -> None:
    src = tmp_path / "src"
    make_layout(src, "v1", layers=1)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{registry}/a/app:v1")
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{registry}/a/app:v1",
        f"docker://{registry}/b/app:v1",
    )
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/b/app:v1"))
    assert len(inspect["Layers"]) == 1


TOKEN = RegistryAuth(
    "token",
    users={"pusher": "pusher-pw", "puller": "puller-pw"},
    access=("pusher:pull,push", "puller:pull"),
)


@pytest.mark.parametrize("registry_server", [TOKEN], indirect=True)
def test_token_auth_with_skopeo_creds(tmp_path: Path, registry: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    make_layout(src, "v1", layers=1)
    ref = f"docker://{registry}/secure/app:v1"
    denied = subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "puller:puller-pw",
            f"oci:{src}:v1",
            ref,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert denied.returncode != 0
    anonymous = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--no-creds", ref], capture_output=True, timeout=60
    )
    assert anonymous.returncode != 0
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "pusher:pusher-pw", f"oci:{src}:v1", ref)
    skopeo("copy", "--src-tls-verify=false", "--src-creds", "puller:puller-pw", ref, f"oci:{out}:v1")
    assert blob_files(src) == blob_files(out)
