"""Interop with real clients: skopeo (and podman login) against a real ``dockyard-registry serve``.

Images are generated here (random tar.gz layers in a hand-written OCI layout); no network needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed"),
]
SECRET = "interop-secret-interop-secret-interop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(root: Path, *extra: str) -> Iterator[str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "dockyard.registry",
        "serve",
        "--root",
        str(root),
        "--port",
        str(port),
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401 with auth on: it is up
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path / "registry")


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


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[str]:
    users = []
    for user in ("pusher", "puller"):
        hashed = bcrypt.hashpw(f"{user}-pw".encode(), bcrypt.gensalt(rounds=4)).decode()
        users.append(f"{user}:{hashed}")
    (tmp_path / "htpasswd").write_text("\n".join(users) + "\n")
    (tmp_path / "access").write_text("pusher:pull,push\npuller:pull\n")
    yield from _serve(
        tmp_path / "registry",
        "--auth",
        "token",
        "--htpasswd",
        str(tmp_path / "htpasswd"),
        "--access",
        str(tmp_path / "access"),
        "--token-secret",
        SECRET,
    )


def test_token_auth_with_skopeo_creds(tmp_path: Path, token_registry: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    make_layout(src, "v1", layers=1)
    ref = f"docker://{token_registry}/secure/app:v1"
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


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")
def test_podman_login(tmp_path: Path, token_registry: str) -> None:
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    ok = subprocess.run(
        ["podman", "login", "--tls-verify=false", "-u", "pusher", "-p", "pusher-pw", token_registry],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        ["podman", "login", "--tls-verify=false", "-u", "pusher", "-p", "wrong", token_registry],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert bad.returncode != 0
