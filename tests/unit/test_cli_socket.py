"""Which gateway socket the CLI picks without -H: the user's own platform first, then root's.

Real unix sockets in a temporary tree; "root's" is a socket in a directory (or with a mode) this
user may not use, as /run/dockyard is to a user outside the dockyard group.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.client.connection import default_host, socket_candidates

needs_non_root = pytest.mark.skipif(os.geteuid() == 0, reason="root may use every socket")


def _listen(path: Path, mode: int = 0o600) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    path.chmod(mode)
    return sock


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKYARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DOCKYARD_RUN_DIR", str(tmp_path / "run"))
    yield tmp_path
    for d in (tmp_path / "run", tmp_path / "run-closed"):
        if d.exists():
            d.chmod(0o700)


def test_the_users_own_sockets_come_before_roots(tree: Path) -> None:
    assert socket_candidates() == [
        tree / "xdg" / "dockyard" / "dockyard.sock",
        tree / "state" / "dockyard.sock",
        tree / "run" / "dockyard.sock",
    ]


@needs_non_root
def test_own_platform_is_chosen_while_roots_socket_exists(tree: Path) -> None:
    """The bug: root's socket, present but not ours, was picked first and every command said
    "permission denied"."""
    roots = _listen(tree / "run" / "dockyard.sock", 0o600)
    (tree / "run").chmod(0o750)  # a group we are not in, as /run/dockyard is
    own = _listen(tree / "xdg" / "dockyard" / "dockyard.sock")
    try:
        assert default_host() == f"unix://{tree / 'xdg' / 'dockyard' / 'dockyard.sock'}"
        own.close()
        (tree / "xdg" / "dockyard" / "dockyard.sock").unlink()
        state = _listen(tree / "state" / "dockyard.sock")  # no XDG socket: the state dir's
        assert default_host() == f"unix://{tree / 'state' / 'dockyard.sock'}"
        state.close()
    finally:
        own.close()
        roots.close()


@needs_non_root
def test_roots_socket_when_it_is_the_only_one_we_may_use(tree: Path) -> None:
    roots = _listen(tree / "run" / "dockyard.sock", 0o666)  # as a member of the dockyard group
    stale = tree / "xdg" / "dockyard" / "dockyard.sock"
    stale.parent.mkdir(parents=True)
    stale.touch(mode=0o000)  # there, but not ours to use
    try:
        assert default_host() == f"unix://{tree / 'run' / 'dockyard.sock'}"
    finally:
        roots.close()


@needs_non_root
def test_permission_denied_only_when_no_socket_is_usable(tree: Path) -> None:
    roots = _listen(tree / "run" / "dockyard.sock", 0o600)
    try:
        (tree / "run").chmod(0o000)  # we may not even look: still "there", and refused
        assert default_host() == f"unix://{tree / 'run' / 'dockyard.sock'}"
        (tree / "run").chmod(0o755)
        (tree / "run" / "dockyard.sock").chmod(0o000)
        assert default_host() == f"unix://{tree / 'run' / 'dockyard.sock'}"
    finally:
        (tree / "run").chmod(0o755)
        roots.close()


def test_nothing_there_names_the_users_own_socket(tree: Path) -> None:
    assert default_host() == f"unix://{tree / 'xdg' / 'dockyard' / 'dockyard.sock'}"
