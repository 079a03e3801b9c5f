"""Fixtures for the interop tests: our registry as a real subprocess for real clients.

``registry_server`` starts ``dockyard-registry serve`` per test on a free loopback port with a fresh
storage root under ``tmp_path``, waits until ``/v2/`` answers, and stops it afterwards. It runs
without auth unless parametrized indirectly with a ``interop_helpers.RegistryAuth``::

    @pytest.mark.parametrize("registry_server", [RegistryAuth("basic", {...}, (...))], indirect=True)
    def test_x(registry_server: RegistryServer) -> None: ...

The machinery (start/stop, htpasswd, token-aware requests) lives in ``interop_helpers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_helpers import RegistryAuth, RegistryServer, start_registry, stop_registry


@pytest.fixture
def registry_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryServer]:
    """A real registry subprocess; parametrize indirectly with a RegistryAuth to turn auth on."""
    auth: RegistryAuth = getattr(request, "param", None) or RegistryAuth()
    server = start_registry(tmp_path / "registry", auth)
    try:
        yield server
    finally:
        stop_registry(server)
