"""A default port another user's process holds is replaced by a free one, kept for the state dir
(dockyard.local.ports.default_port): two users' `dockyard up` share one machine (issue 15, item 13)."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.local.ports import default_port

OUTSIDER = "dockyard-outsider"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def held_by_another_user() -> Iterator[int]:
    """A port a process of another user listens on."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a listener as another user")
    try:
        pwd.getpwnam(OUTSIDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OUTSIDER], check=True)
    port = _free_port()
    serve = f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
    serve += "print('up', flush=True); time.sleep(60)"
    as_outsider = ["setpriv", "--reuid", OUTSIDER, "--regid", OUTSIDER, "--clear-groups", "--"]
    listener = subprocess.Popen(
        [*as_outsider, sys.executable, "-c", serve], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "up\n"
        yield port
    finally:
        listener.kill()
        listener.wait()


def test_another_users_port_is_replaced_and_the_choice_kept(
    tmp_path: Path, held_by_another_user: int
) -> None:
    taken = held_by_another_user
    port, note = default_port(tmp_path, "registry", "127.0.0.1", taken)
    assert port != taken and f"port {taken} is" in note and OUTSIDER in note and str(port) in note
    kept = tmp_path / "ports.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    again, note = default_port(tmp_path, "registry", "127.0.0.1", taken)  # the next start: the same port
    assert again == port and note == f"registry: port {port}, kept for this state directory"
    other, _ = default_port(tmp_path, "nats", "127.0.0.1", _free_port())  # each name its own
    assert other != port


def test_a_free_default_or_our_own_listener_is_kept(tmp_path: Path) -> None:
    free = _free_port()
    assert default_port(tmp_path, "nats", "127.0.0.1", free) == (free, "")
    with socket.socket() as ours:  # most likely our own platform, running: the usual refusal follows
        ours.bind(("127.0.0.1", 0))
        ours.listen()
        mine = int(ours.getsockname()[1])
        assert default_port(tmp_path, "registry", "127.0.0.1", mine) == (mine, "")
    assert not (tmp_path / "ports.json").exists()
