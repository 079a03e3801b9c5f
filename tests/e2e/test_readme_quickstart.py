"""The README's quickstart, run as written (issue 15, item 13), on a machine where another user
already holds the default ports (4222, 5000): `dockyard up` takes others and the lines still work.

The block under "Containers, as with docker" is taken from README.md itself, so the test fails
when the README drifts from what works. Only the interactive part (`exec -it … sh`) is left out,
and `make run` (the platform is started here, with up's default ports).
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import PYTHON, Platform, clean_stop, make_workdir, start

REPO = Path(__file__).resolve().parents[2]
OUTSIDER = "dockyard-outsider"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="holds the default ports as another user")


def quickstart() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Containers, as with docker\n+```sh\n(.*?)\n```", text, re.S)
    assert block, "README.md has no quickstart block under 'Containers, as with docker'"
    lines = [ln for ln in block.group(1).splitlines() if not ln.startswith("make run")]
    script = "\n".join(lines)
    assert "dockyard exec -it web sh" in script  # what is left out, so the test notices a change
    return script.replace(" ; dockyard exec -it web sh", "")


@pytest.fixture(scope="module")
def defaults_held() -> Iterator[None]:
    """Another user's processes on 127.0.0.1:4222 and :5000, unless something holds them already."""
    try:
        pwd.getpwnam(OUTSIDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OUTSIDER], check=True)
    holders = []
    for port in (4222, 5000):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                continue  # taken already (by whom is up's business)
        serve = f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
        serve += "print('up', flush=True); time.sleep(600)"
        as_outsider = ["setpriv", "--reuid", OUTSIDER, "--regid", OUTSIDER, "--clear-groups", "--"]
        holder = subprocess.Popen(
            [*as_outsider, sys.executable, "-c", serve], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline() == "up\n"
        holders.append(holder)
    try:
        yield
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, defaults_held: None) -> Iterator[Platform]:
    workdir = make_workdir(Path(tmp_path_factory.mktemp("quickstart", numbered=True)))
    platform = start(workdir / "state", None)
    try:
        yield platform
    finally:
        clean_stop(platform)


def test_the_quickstart_works_as_written_beside_another_users_platform(
    platform: Platform, tmp_path: Path
) -> None:
    assert platform.registry_http not in ("127.0.0.1:5000", "")  # another user holds 5000
    assert "port 5000 is" in platform.output.read_text()  # and up said what it did
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "dockyard").write_text(f'#!/bin/sh\nexec {PYTHON} -m dockyard.cli -H {platform.gateway} "$@"\n')
    (shim / "dockyard").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", quickstart()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "hello\n" in done.stdout and "hello from dockyard\n" in done.stdout, done.stdout
    assert f"{platform.registry_http}/team/web" in done.stdout  # images lists what was pushed and pulled
