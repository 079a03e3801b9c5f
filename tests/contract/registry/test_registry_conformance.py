"""The upstream OCI distribution-spec v1.1.1 conformance suite against our registry.

Needs the suite binary built by ``tests/conformance/build.sh`` (skipped when it is absent). All
four workflows run, with automatic cross-mount expected on; every spec that runs must pass.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from dockyard.registry.auth import Authorizer
from dockyard.registry.config import RegistryConfig
from dockyard.registry.http import make_http_app
from dockyard.registry.registry import Registry
from dockyard.registry.storage import FilesystemDriver

ROOT = Path(__file__).resolve().parents[3]
BINARY = ROOT / ".cache" / "conformance" / "conformance.test"

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason="conformance suite not built (tests/conformance/build.sh)"
)


class _Events:
    def publish(self, event: object) -> None:
        pass


@pytest.fixture
async def registry_url(tmp_path: Path) -> AsyncIterator[str]:
    config = RegistryConfig(root=tmp_path / "root")
    registry = Registry(FilesystemDriver(config.root), _Events(), config)
    runner = web.AppRunner(make_http_app(registry, Authorizer(config)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_oci_conformance_suite_passes(registry_url: str, tmp_path: Path) -> None:
    import asyncio

    env = {**os.environ, "OCI_AUTOMATIC_CROSSMOUNT": "1", "CONFORMANCE_BIN": str(BINARY)}
    cmd = [str(ROOT / "tests/conformance/run.sh"), registry_url, "conformance/main", str(tmp_path / "report")]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    summary = out.decode()
    assert proc.returncode == 0, summary
    assert ", 0 failed" in summary
