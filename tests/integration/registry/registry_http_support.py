"""A real registry HTTP server on a free loopback port, backed by a tmp_path filesystem store."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dockyard.core.events import Event
from dockyard.registry.auth import Authorizer
from dockyard.registry.config import RegistryConfig
from dockyard.registry.http import make_http_app
from dockyard.registry.registry import Registry
from dockyard.registry.storage import FilesystemDriver


@dataclass
class ListPublisher:
    events: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.events.append(event)


@dataclass
class Server:
    url: str
    host: str
    port: int
    registry: Registry
    publisher: ListPublisher
    session: aiohttp.ClientSession

    def stored_blobs(self) -> list[str]:
        return sorted(i.path for i in self.registry.storage.walk("blobs"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_server(tmp_path: Path, **overrides: object) -> tuple[web.AppRunner, Server]:
    port = free_port()
    config = RegistryConfig(root=tmp_path / "root", host="127.0.0.1", port=port, gc_grace=0, **overrides)  # type: ignore[arg-type]
    publisher = ListPublisher()
    registry = Registry(FilesystemDriver(config.root), publisher, config)
    runner = web.AppRunner(make_http_app(registry, Authorizer(config)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    session = aiohttp.ClientSession()
    return runner, Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, registry, publisher, session)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    runner, srv = await start_server(tmp_path)
    try:
        yield srv
    finally:
        await srv.session.close()
        await runner.cleanup()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(srv: Server, name: str, data: bytes) -> str:
    d = digest_of(data)
    async with srv.session.post(f"{srv.url}/v2/{name}/blobs/uploads/?digest={d}", data=data) as r:
        assert r.status == 201, await r.text()
    return d


def manifest_for(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest_of(x),
                "size": len(x),
            }
            for x in layers
        ],
        **extra,
    }
    return json.dumps(doc).encode()


async def push_image(srv: Server, name: str, tag: str, seed: bytes = b"s") -> tuple[str, bytes]:
    config, layer = b'{"seed":"' + seed + b'"}', b"layer" + seed * 50
    await push_blob(srv, name, config)
    await push_blob(srv, name, layer)
    body = manifest_for(config, [layer])
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    async with srv.session.put(f"{srv.url}/v2/{name}/manifests/{tag}", data=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        return r.headers["Docker-Content-Digest"], body


async def oci_code(resp: aiohttp.ClientResponse) -> str:
    body = await resp.json(content_type=None)
    code: str = body["errors"][0]["code"]
    return code
