"""End to end on a real pseudo-terminal: ``run -it``, the detach keys, ``attach``, and docker's
``run -it`` through the Engine API.

Each client runs with a pty as its stdin, stdout and stderr, as a user at a terminal has it; the
test types into the pty's master side and reads what the terminal would show.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from docker_cli import DOCKER, Docker
from e2e_platform import PYTHON, Platform, as_user, busybox_fixtures

CTRL_P_CTRL_Q = b"\x10\x11"


workdir, platform = busybox_fixtures("terminal-e2e")


class Terminal:
    """``argv`` on a fresh 24x80 pty."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=env
        )
        os.close(slave)
        self.seen = b""

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never shown; the terminal showed {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the client closed the pty
                    chunk = b""
                if not chunk:
                    assert needle in self.seen, f"{needle!r} never shown; ended with {self.seen[-2000:]!r}"
                self.seen += chunk

    def exit_code(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            os.close(self.master)
        return code


def _dockyard(platform: Platform, *args: str) -> Terminal:
    return Terminal([PYTHON, "-m", "dockyard.cli", "-H", platform.gateway, *args])


def test_run_it_detach_keys_and_attach(platform: Platform) -> None:
    shell = _dockyard(platform, "run", "-it", "--name", "shell", "busybox", "sh")
    try:
        shell.expect(b"# ")
        shell.type(b"echo sum-$((40+2)); tty\r")
        shell.expect(b"sum-42")
        shell.expect(b"/dev/pts/")
        shell.type(CTRL_P_CTRL_Q)
        assert shell.exit_code() == 0  # detached, not ended
        assert platform.ok("inspect", "-f", "{{.State.Status}}", "shell").strip() == "running"

        again = _dockyard(platform, "attach", "shell")
        again.type(b"echo back-$((1+1))\r")
        again.expect(b"back-2")
        again.type(b"exit 3\r")
        assert again.exit_code() == 3  # the container's code
        assert platform.ok("inspect", "-f", "{{.State.Status}}", "shell").strip() == "exited"
        refused = platform.cli("attach", "shell")
        assert refused.returncode == 1 and "start it first" in refused.stderr, refused.stderr
    finally:
        platform.cli("rm", "-f", "shell")


def test_other_detach_keys(platform: Platform) -> None:
    shell = _dockyard(platform, "run", "-it", "--rm", "--detach-keys", "ctrl-a,d", "busybox", "sh")
    shell.expect(b"# ")
    shell.type(CTRL_P_CTRL_Q + b"echo still-here\r")  # not the keys now: the shell gets them
    shell.expect(b"still-here")
    shell.type(b"\x01d")
    assert shell.exit_code() == 0
    running = platform.ok("ps", "--format", "{{.Names}}").split()
    assert len(running) == 1, running
    platform.ok("rm", "-f", running[0])
    bad = platform.cli("run", "--rm", "--detach-keys", "shift-q", "busybox", "true")
    assert bad.returncode == 125 and "invalid detach keys" in bad.stderr, bad.stderr


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")
def test_docker_run_it_through_the_engine_api(platform: Platform, workdir: Path) -> None:
    docker = Docker(platform, workdir)
    shell = Terminal(
        [*as_user(docker.user), str(DOCKER), "run", "-it", "--rm", "busybox", "sh"], env=docker.env
    )
    shell.expect(b"# ")
    shell.type(b"echo cols=$(stty size)\r")
    shell.expect(b"cols=24 80")  # the terminal's size reached the container
    shell.type(b"exit 4\r")
    assert shell.exit_code() == 4
