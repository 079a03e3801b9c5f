"""Real registries and real images for the distribution client's tests.

* ``dockyard_registry`` — ``dockyard-registry serve`` as a subprocess (``interop_helpers``), no auth
  unless parametrized indirectly with a ``RegistryAuth``.
* ``cncf_registry`` — Debian's CNCF distribution 2.8 (``/usr/bin/docker-registry``) from a YAML
  config, storage under ``tmp_path``; :func:`start_cncf` takes an optional htpasswd user.
* :func:`oci_layout` writes an OCI image layout by hand (gzip'd tar layers made by ``tarfile``, a
  config with the right diff_ids, a manifest, ``index.json``); :func:`oci_index_layout` one whose
  tag names an image index of an amd64 and an arm64 image. :func:`skopeo` copies them into
  registries — that is how images get there: through a real client, not through our code.

Layout under ``tmp_path``::

    tmp_path/
    ├── registry/        the Dockyard registry (interop_helpers' tree)
    ├── cncf/            docker-registry: config.yml, htpasswd, storage/, server.log
    └── <name>/          OCI layouts built by the tests
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "interop"))

from interop_helpers import (
    RegistryAuth,
    RegistryServer,
    free_port,
    start_registry,
    stop_registry,
)

from dockyard.core.errors import NotFound
from dockyard.core.events import Event
from dockyard.runtime.images.content import ContentStore
from dockyard.runtime.images.store import ImageStore

__all__ = ["RegistryAuth", "RegistryServer", "free_port"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- registries ---------------------------------------------------------------------------------


@pytest.fixture
def dockyard_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryServer]:
    """A real ``dockyard-registry serve``; parametrize indirectly with a RegistryAuth for auth."""
    auth: RegistryAuth = getattr(request, "param", None) or RegistryAuth()
    server = start_registry(tmp_path / "registry", auth)
    try:
        yield server
    finally:
        stop_registry(server)


@dataclass
class CncfRegistry:
    """A running ``docker-registry`` (CNCF distribution 2.8)."""

    port: int
    root: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    user: tuple[str, str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_data(self, digest: str) -> Path:
        """Where distribution keeps a blob's bytes (its storage driver's documented layout)."""
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_cncf(
    base: Path, user: tuple[str, str] | None = None, *, port: int | None = None, wait: bool = True
) -> CncfRegistry:
    """Start docker-registry with storage under ``base`` (reused if there); ``wait=False`` returns
    at once, before it listens."""
    base.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(base / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "distribution-test-secret"},
    }
    if user is not None:
        (base / "htpasswd").write_text(
            f"{user[0]}:{bcrypt.hashpw(user[1].encode(), bcrypt.gensalt(5)).decode()}\n"
        )
        config["auth"] = {"htpasswd": {"realm": "cncf", "path": str(base / "htpasswd")}}
    (base / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log_path = base / "server.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", str(base / "config.yml")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = CncfRegistry(port, base / "storage", log_path, proc, user)
    if not wait:
        return server
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited with {proc.returncode}:\n{server.log()}")
        try:
            if requests.get(f"http://{server.address}/v2/", timeout=1).status_code in (200, 401):
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            stop_cncf(server)
            pytest.fail(f"docker-registry did not answer within 20 s:\n{server.log()}")
        time.sleep(0.05)


def stop_cncf(server: CncfRegistry) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture
def cncf_registry(tmp_path: Path) -> Iterator[CncfRegistry]:
    server = start_cncf(tmp_path / "cncf")
    try:
        yield server
    finally:
        stop_cncf(server)


# -- images ----------------------------------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar of regular files (owner 0, mode 0644, mtime 0), with parent dirs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(files[name]), 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


@dataclass
class Image:
    """What a test image is made of, as the registry will serve it (OCI media types)."""

    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def layer_digests(self) -> list[str]:
        return [digest_of(x) for x in self.layers]


def make_image(seed: str, n_layers: int = 2, arch: str = "amd64", size: int = 4096) -> Image:
    """A small image whose layers are gzip'd tars of files with ``seed``-dependent content."""
    tars = [
        layer_tar({f"data/{seed}-{i}.txt": (f"{seed}:{i}:".encode() * size)[:size], f"etc/{seed}-{i}": b"x"})
        for i in range(n_layers)
    ]
    layers = [gzip.compress(t, mtime=0) for t in tars]
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in tars]},
            "history": [{"created_by": f"layer {i}"} for i in range(n_layers)],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_GZIP, "digest": digest_of(x), "size": len(x)} for x in layers],
        },
        sort_keys=True,
    ).encode()
    return Image(manifest, config, layers)


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    d = digest_of(data)
    path = layout / "blobs/sha256" / d[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": d, "size": len(data)}


def _write_layout(layout: Path, tag: str, top: dict[str, Any]) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))


def oci_layout(layout: Path, tag: str, image: Image) -> Path:
    """Write ``image`` as an OCI image layout at ``layout`` with ``tag``; returns ``layout``."""
    for blob in (image.config, *image.layers):
        _write_blob(layout, blob)
    _write_layout(layout, tag, {"mediaType": OCI_MANIFEST, **_write_blob(layout, image.manifest)})
    return layout


def oci_index_layout(layout: Path, tag: str, images: dict[str, Image]) -> bytes:
    """An OCI layout whose ``tag`` is an image index of ``images`` (arch → image); returns the index."""
    entries = []
    for arch, image in images.items():
        for blob in (image.config, *image.layers):
            _write_blob(layout, blob)
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                **_write_blob(layout, image.manifest),
                "platform": {
                    "os": "linux",
                    "architecture": arch,
                    **({"variant": "v8"} if arch == "arm64" else {}),
                },
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    _write_layout(layout, tag, {"mediaType": OCI_INDEX, **_write_blob(layout, index)})
    return index


def big_layout(layout: Path, tag: str, n_layers: int, layer_mib: int) -> Image:
    """An image of ``n_layers`` uncompressed tar layers, each one file of ``layer_mib`` MiB of random
    bytes, written straight to the layout (the Image returned holds only manifest and config)."""
    layout.mkdir(parents=True, exist_ok=True)
    descs, diff_ids = [], []
    for i in range(n_layers):
        tmp = layout / f"layer-{i}.tar"
        src = layout / f"random-{i}"
        with src.open("wb") as fh:
            for _ in range(layer_mib):
                fh.write(os.urandom(1 << 20))
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(src, arcname=f"data/random-{i}")
        src.unlink()
        h = hashlib.sha256()
        with tmp.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        d = "sha256:" + h.hexdigest()
        size = tmp.stat().st_size
        (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        tmp.rename(layout / "blobs/sha256" / d[7:])
        descs.append({"mediaType": LAYER_TAR, "digest": d, "size": size})
        diff_ids.append(d)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **_write_blob(layout, config)},
            "layers": descs,
        }
    ).encode()
    _write_layout(layout, tag, {"mediaType": OCI_MANIFEST, **_write_blob(layout, manifest)})
    return Image(manifest, config, [])


def skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``skopeo <args>`` with a private, empty policy/registries config; AssertionError on failure."""
    proc = subprocess.run(
        ["/usr/bin/skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def skopeo_push(layout: Path, tag: str, dest: str, *extra: str) -> None:
    """``skopeo copy oci:LAYOUT:TAG docker://DEST`` over plain HTTP (extra: --format v2s2, --all, creds)."""
    skopeo("copy", "--dest-tls-verify=false", *extra, f"oci:{layout}:{tag}", f"docker://{dest}")


def skopeo_inspect(ref: str, *extra: str, raw: bool = False) -> dict[str, Any]:
    out = skopeo("inspect", "--tls-verify=false", *extra, *(["--raw"] if raw else []), f"docker://{ref}")
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


# -- a store for the transfer-only measurement -------------------------------------------------


@dataclass
class TransferRecord:
    """The record fields the distribution client reads (a subset of ``ImageRecord``'s)."""

    manifest_digest: str
    manifest_media_type: str
    repo_tags: list[str]
    repo_digests: list[str]


class TransferStore:
    """A content store plus references, without unpacking: isolates transfer cost in the benchmark.

    It checks what ``add_image`` is promised (manifest, config and every layer already in content).
    """

    def __init__(self, root: Path) -> None:
        self.content = ContentStore(root)
        self.records: dict[str, TransferRecord] = {}

    def add_image(
        self, manifest: bytes, reference: str | None, repo_digest: str | None = None
    ) -> TransferRecord:
        doc = json.loads(manifest)
        digest = digest_of(manifest)
        assert self.content.has(digest), "the manifest must be in content before add_image"
        for blob in [doc["config"], *doc["layers"]]:
            assert self.content.has(blob["digest"]), f"{blob['digest']} missing before add_image"
        record = self.records.get(digest) or TransferRecord(
            digest, doc.get("mediaType", OCI_MANIFEST), [], []
        )
        if reference and reference not in record.repo_tags:
            record.repo_tags.append(reference)
        if repo_digest and repo_digest not in record.repo_digests:
            record.repo_digests.append(repo_digest)
        self.records[digest] = record
        return record

    def resolve(self, ref: str) -> TransferRecord:
        for record in self.records.values():
            if ref in record.repo_tags or ref == record.manifest_digest:
                return record
        raise NotFound(f"no such image: {ref}")

    def manifest_bytes(self, record: TransferRecord) -> bytes:
        return self.content.read_bytes(record.manifest_digest)

    def announce(self, subject: object, record: TransferRecord) -> None:
        pass


@dataclass
class ListPublisher:
    """Keeps the events an ImageStore emits."""

    events: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.events.append(event)


def new_store(root: Path) -> ImageStore:
    """A fresh real image store (content, unpacked layers, records) with a list publisher."""
    return ImageStore(root, ListPublisher(), "runtime-test")
