"""Fixtures for the registry core's unit tests: a real filesystem driver in tmp_path, a list publisher."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.core.events import Event
from dockyard.core.oci.digest import Digest
from dockyard.registry.config import RegistryConfig
from dockyard.registry.registry import Registry
from dockyard.registry.storage import FilesystemDriver


@dataclass
class ListPublisher:
    events: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.nats_subject for e in self.events]


@pytest.fixture
def publisher() -> ListPublisher:
    return ListPublisher()


@pytest.fixture
def registry(tmp_path: Path, publisher: ListPublisher) -> Registry:
    config = RegistryConfig(root=tmp_path / "root", upload_expiry=60, gc_grace=0)
    return Registry(FilesystemDriver(config.root), publisher, config)


def push_blob(registry: Registry, name: str, data: bytes) -> Digest:
    status = registry.start_upload(name)
    writer = registry.open_chunk(name, status.upload_id)
    writer.write(data)
    writer.commit()
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    registry.finish_upload(name, status.upload_id, digest)
    return digest


def image_manifest(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                "size": len(layer),
            }
            for layer in layers
        ],
        **extra,
    }
    return json.dumps(doc).encode()


def push_image(registry: Registry, name: str, tag: str, seed: bytes = b"x") -> tuple[Digest, list[Digest]]:
    """Push a config + one layer + manifest; returns (manifest digest, [config, layer] digests)."""
    config = b'{"os":"linux","seed":"' + seed + b'"}'
    layer = b"layer-" + seed * 100
    blobs = [push_blob(registry, name, config), push_blob(registry, name, layer)]
    result = registry.put_manifest(name, tag, image_manifest(config, [layer]))
    return result.digest, blobs
