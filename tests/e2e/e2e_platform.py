"""A real `dockyard up` for end-to-end tests, run as the unprivileged user when the tests run as root.

Not a test module: the e2e tests import it (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters.nats.server import free_port
from dockyard.runtime.userns import end_node

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
USER = os.environ.get("DOCKYARD_USER", "dockyard")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), "/bin/busybox")


@dataclass
class Platform:
    process: subprocess.Popen[str]
    state_dir: Path
    gateway: str
    registry_http: str
    output: Path

    def cli(
        self, *args: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "dockyard.cli", "-H", self.gateway, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def ok(self, *args: str, timeout: float = 60) -> str:
        """Run the CLI; fail the test with its stderr unless it exits 0; return stdout."""
        done = self.cli(*args, timeout=timeout)
        assert done.returncode == 0, f"dockyard {' '.join(args)} → {done.returncode}: {done.stderr}"
        return done.stdout

    def registry_login(self) -> dict[str, str]:
        """The login of the platform's registry (``dockyard up`` makes one; its HTTP port needs it to
        push or delete): ``registry``, ``username``, ``password``, as ``dockyard registry credentials``
        gives it through the gateway."""
        login: dict[str, str] = json.loads(self.ok("registry", "credentials", "--format", "json"))
        return login

    def registry_creds(self) -> str:
        """``user:password`` for skopeo's ``--creds`` / ``--dest-creds`` and podman's ``--creds``."""
        login = self.registry_login()
        return f"{login['username']}:{login['password']}"

    def registry_headers(self) -> dict[str, str]:
        """An ``Authorization: Basic`` header for requests to the registry's HTTP port (the registry
        takes Basic on /v2/ in token mode too)."""
        token = base64.b64encode(self.registry_creds().encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


def as_user(user: str = USER) -> list[str]:
    """Run as the unprivileged ``user`` when we are root (CI), as ourselves otherwise."""
    if os.geteuid() != 0:
        return []
    try:
        group = pwd.getpwnam(user).pw_gid
    except KeyError:
        pytest.fail(f"user {user!r} missing: run `make setup` (it creates the unprivileged users)")
    return ["setpriv", "--reuid", user, "--regid", str(group), "--init-groups", "--"]


def make_workdir(path: Path, user: str = USER) -> Path:
    """``path`` world-traversable and owned by the platform's user (it keeps its state there)."""
    path.chmod(0o755)
    for parent in path.parents:
        if parent == Path("/"):
            break
        if not parent.stat().st_mode & 0o001:
            parent.chmod(parent.stat().st_mode | 0o001)
    if os.geteuid() == 0:
        shutil.chown(path, user, pwd.getpwnam(user).pw_gid)
    return path


def start(
    state_dir: Path,
    ports: tuple[int, int] | None,
    *extra: str,
    env: dict[str, str] | None = None,
    user: str = USER,
) -> Platform:
    """``dockyard up`` on ``state_dir`` with (NATS, registry HTTP) ``ports`` (None: up's defaults,
    and the registry's address is asked of the platform), waited for until ready.

    ``extra`` are more ``up`` flags, ``env`` more environment variables, ``user`` who runs it (as root).
    """
    output = state_dir.parent / f"up-{time.monotonic_ns()}.out"
    env = {
        **os.environ,
        "HOME": str(state_dir.parent),
        "DOCKYARD_LOG_LEVEL": "info",
        "CONTAINERS_REGISTRIES_CONF": str(hermetic_registries_conf(state_dir.parent, ports)),
        **(env or {}),
    }
    env.pop("XDG_RUNTIME_DIR", None)  # so the gateway's socket is the fallback, <state-dir>/dockyard.sock
    cmd = [
        *as_user(user),
        PYTHON,
        "-m",
        "dockyard.cli",
        "up",
        "--state-dir",
        str(state_dir),
        *(("--nats-port", str(ports[0]), "--registry-listen", f"127.0.0.1:{ports[1]}") if ports else ()),
        *extra,
    ]
    with open(output, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    gateway = f"unix://{state_dir}/dockyard.sock"
    platform = Platform(process, state_dir, gateway, f"127.0.0.1:{ports[1]}" if ports else "", output)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            end_node(state_dir / "runtime")  # a runtime that started before another part failed
            pytest.fail(f"dockyard up exited {process.returncode}:\n{output.read_text()}")
        if "platform ready" in output.read_text():
            if not ports:
                platform.registry_http = platform.registry_login()["registry"]
            return platform
        time.sleep(0.2)
    process.kill()
    process.wait()
    end_node(state_dir / "runtime")
    pytest.fail(f"dockyard up not ready in 90 s:\n{output.read_text()}")


def hermetic_registries_conf(directory: Path, ports: tuple[int, int] | None) -> Path:
    """A registries.conf that keeps a test off the internet and off the machine's /etc/containers:
    Docker Hub's names go to the platform's own registry (when its port is known), else to a
    closed loopback port. A test that wants its own passes ``CONTAINERS_REGISTRIES_CONF``."""
    location = f"127.0.0.1:{ports[1]}" if ports else "127.0.0.1:9"
    path = directory / "hermetic-registries.conf"
    path.write_text(f'[[registry]]\nprefix = "docker.io"\nlocation = "{location}"\ninsecure = true\n')
    path.chmod(0o644)
    return path


def stop(platform: Platform) -> int:
    platform.process.send_signal(signal.SIGTERM)
    return platform.process.wait(timeout=60)


def busybox_rootfs_tar(path: Path) -> Path:
    """A busybox rootfs tarball (Debian's static busybox, an applet link each, a web root owned by 33)."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()

    def entry(name: str, kind: bytes, mode: int, uid: int = 0, data: bytes = b"", link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 1700000000
        info.size, info.linkname = len(data), link
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(path, "w") as tar:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("var", 0o755)):
            entry(d, tarfile.DIRTYPE, mode)
        entry("var/www", tarfile.DIRTYPE, 0o755, uid=33)
        entry("var/www/index.html", tarfile.REGTYPE, 0o644, uid=33, data=b"hello from dockyard\n")
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        passwd = b"root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n"
        entry("etc/passwd", tarfile.REGTYPE, 0o644, data=passwd)
        entry("etc/group", tarfile.REGTYPE, 0o644, data=b"root:x:0:\nwww-data:x:33:\n")
    path.chmod(0o644)
    return path


def clean_stop(platform: Platform) -> None:
    """Remove every container and user network, stop the platform, kill what it leaves by design."""
    if platform.process.poll() is None:
        for cid in platform.cli("ps", "-aq").stdout.split():
            platform.cli("rm", "-f", cid)
        platform.cli("network", "prune", "-f")
        assert stop(platform) == 0, platform.output.read_text()[-3000:]
    end_node(platform.state_dir / "runtime")  # by design it outlives the platform; a test's must not


@contextlib.contextmanager
def busybox_platform(workdir: Path, user: str = USER) -> Iterator[Platform]:
    """A platform under ``workdir/state``, run by ``user``, with ``busybox:latest`` imported; cleaned up."""
    platform = start(workdir / "state", (free_port(), free_port()), user=user)
    try:
        platform.ok(
            "import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "busybox:latest", "-c", 'CMD ["sh"]'
        )
        yield platform
    finally:
        clean_stop(platform)


def busybox_fixtures(name: str) -> tuple[Any, Any]:
    """A test module's ``workdir`` and ``platform`` fixtures: a private work directory named
    ``name``, and a platform with busybox in it for the whole module. Use as
    ``workdir, platform = busybox_fixtures("my-e2e")``."""

    @pytest.fixture(scope="module")
    def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return make_workdir(Path(tmp_path_factory.mktemp(name, numbered=True)))

    @pytest.fixture(scope="module")
    def platform(workdir: Path) -> Iterator[Platform]:
        with busybox_platform(workdir) as running:
            yield running

    return workdir, platform
