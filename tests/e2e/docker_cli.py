"""The docker CLI as the platform's user, pointed at a platform's docker.sock (not a test module)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from e2e_platform import USER, Platform, as_user

DOCKER = shutil.which("docker")


class Docker:
    def __init__(self, platform: Platform, workdir: Path, user: str = USER) -> None:
        self.socket = platform.state_dir / "docker.sock"
        config = workdir / f"docker-config-{user}"
        config.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(config, user)
        self.user = user
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(config)}

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user(self.user), str(DOCKER), *args],
            capture_output=True,
            text=True,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            env=self.env,
        )

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        done = self(*args, input=input, timeout=timeout)
        assert done.returncode == 0, f"docker {' '.join(args)} → {done.returncode}: {done.stderr}"
        return done.stdout
