"""Helpers for the image store's unit tests: real tars built in memory, a list publisher."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dockyard.core.events import Event
from dockyard.runtime.images.content import ContentStore

if TYPE_CHECKING:
    from dockyard.runtime.images.store import ImageStore

MTIME = 1_700_000_000


class TarBuilder:
    """A layer tar assembled member by member (PAX format, so xattrs and big values fit)."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed by bytes()

    def _info(self, name: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.mtime = MTIME
        return info

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(
        self,
        name: str,
        data: bytes = b"",
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        xattrs: dict[str, str] | None = None,
    ) -> TarBuilder:
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str) -> TarBuilder:
        info = self._info(name, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> TarBuilder:
        info = self._info(name, tarfile.LNKTYPE, 0o644, 0, 0)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def device(self, name: str, kind: bytes = tarfile.CHRTYPE) -> TarBuilder:
        info = self._info(name, kind, 0o666, 0, 0)
        info.devmajor, info.devminor = 1, 3
        self._tar.addfile(info)
        return self

    def fifo(self, name: str) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, 0o640, 0, 0))
        return self

    def bytes(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()

    def gz(self) -> bytes:
        return gzip.compress(self.bytes(), mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(seed: str, *more: tuple[str, bytes]) -> bytes:
    """A small plain layer tar holding ``/<seed>`` and any further (name, data) files."""
    tb = TarBuilder().dir("etc").file(f"etc/{seed}", seed.encode() * 10)
    for name, data in more:
        tb.file(name, data)
    return tb.bytes()


def image_config(layers: list[bytes], config_extra: dict | None = None) -> bytes:
    """The config ``put_image`` stores for ``layers`` (its digest is the image id)."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
        "history": [
            {"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"} for i in range(len(layers))
        ],
        **(config_extra or {}),
    }
    return json.dumps(config).encode()


def put_image(
    content: ContentStore, layers: list[bytes], *, gzipped: bool = False, config_extra: dict | None = None
) -> bytes:
    """Store a config and layers in ``content``; return the OCI manifest (not stored) naming them."""
    blobs = [gzip.compress(t, mtime=0) if gzipped else t for t in layers]
    raw_config = image_config(layers, config_extra)
    content.write_bytes(raw_config)
    for blob in blobs:
        content.write_bytes(blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(raw_config),
            "size": len(raw_config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzipped else ""),
                "digest": sha(b),
                "size": len(b),
            }
            for b in blobs
        ],
    }
    return json.dumps(manifest).encode()


@dataclass
class ListPublisher:
    events: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        return [e.action for e in self.events]


@pytest.fixture
def publisher() -> ListPublisher:
    return ListPublisher()


@pytest.fixture
def store(tmp_path: Path, publisher: ListPublisher) -> ImageStore:
    from dockyard.runtime.images.store import ImageStore

    return ImageStore(tmp_path / "images", publisher, "/dockyard/runtime/test")
