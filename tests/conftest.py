"""Fixtures shared by every test layer: a real nats-server per test that asks for one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.adapters.nats.auth import NatsAuth, write_auth
from dockyard.adapters.nats.bus import StreamSettings
from dockyard.adapters.nats.server import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on a free port, its store under tmp_path; no authentication."""
    server = NatsServer(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class AuthNats:
    server: NatsServer
    auth: NatsAuth
    settings: StreamSettings


@pytest.fixture
def auth_nats(tmp_path: Path) -> Iterator[AuthNats]:
    """A real nats-server with the users, permissions and limits `dockyard up` gives it."""
    settings = StreamSettings()
    auth = write_auth(tmp_path / "nats-auth", settings)
    server = NatsServer(
        store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", config_file=auth.config_file
    ).start()
    try:
        yield AuthNats(server, auth, settings)
    finally:
        server.stop()
