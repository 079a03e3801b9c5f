"""End to end: --cap-add/--cap-drop, rootless --privileged and --init, from the CLI and docker's.

What a container holds is read from inside it (``/proc/self/status``'s CapEff, PID 1's command
line), so the test sees what runc was really told, not what the record says.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from docker_cli import DOCKER, Docker
from e2e_platform import Platform, busybox_fixtures

CAP_NET_ADMIN = 12
CAP_CHOWN = 0
LAST_CAP = 40  # CAP_CHECKPOINT_RESTORE: the kernel has them all (6.x)


workdir, platform = busybox_fixtures("privileges-e2e")


def _effective(platform: Platform, *flags: str) -> int:
    out = platform.ok("run", "--rm", *flags, "busybox", "grep", "CapEff", "/proc/self/status")
    return int(out.split()[1], 16)


def test_cap_add_and_cap_drop(platform: Platform) -> None:
    default = _effective(platform)
    assert default & (1 << CAP_CHOWN) and not default & (1 << CAP_NET_ADMIN)
    added = _effective(platform, "--cap-add", "NET_ADMIN", "--cap-drop", "chown")
    assert added & (1 << CAP_NET_ADMIN) and not added & (1 << CAP_CHOWN)
    assert _effective(platform, "--cap-drop", "ALL") == 0
    refused = platform.cli("run", "--rm", "--cap-add", "FLY", "busybox", "true")
    assert refused.returncode == 125, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("dockyard: invalid --cap-add 'FLY'"), (
        refused.stderr
    )


def test_privileged_has_every_capability_and_no_masks(platform: Platform) -> None:
    assert _effective(platform, "--privileged") == (1 << (LAST_CAP + 1)) - 1
    # docker hides /sys/firmware under an empty tmpfs; privileged sees the kernel's
    masked = platform.ok("run", "--rm", "busybox", "ls", "/sys/firmware").split()
    unmasked = platform.ok("run", "--rm", "--privileged", "busybox", "ls", "/sys/firmware").split()
    assert masked == [] and unmasked, (masked, unmasked)


def test_init_is_pid_1_and_reaps(platform: Platform) -> None:
    cmdline = platform.ok("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline")
    assert cmdline.split("\0")[:3] == ["/run/dockyard-init", "--", "cat"], cmdline
    # the command's exit code still comes through the init
    assert platform.cli("run", "--rm", "--init", "busybox", "sh", "-c", "exit 7").returncode == 7
    without = platform.ok("run", "--rm", "busybox", "cat", "/proc/1/cmdline")
    assert without.split("\0")[0] == "cat"


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")
def test_the_docker_cli_passes_them_through(platform: Platform, workdir: Path) -> None:
    docker = Docker(platform, workdir)
    cmdline = docker.ok("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline")
    assert cmdline.startswith("/run/dockyard-init\0"), cmdline
    caps = ("--cap-drop", "ALL", "--cap-add", "NET_ADMIN")
    status = docker.ok("run", "--rm", *caps, "busybox", "grep", "CapEff", "/proc/self/status")
    assert int(status.split()[1], 16) == 1 << CAP_NET_ADMIN
    privileged = docker.ok("run", "--rm", "--privileged", "busybox", "grep", "CapEff", "/proc/self/status")
    assert int(privileged.split()[1], 16) == (1 << (LAST_CAP + 1)) - 1


def test_platform_is_checked_against_the_image(platform: Platform, workdir: Path) -> None:
    native = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    foreign = "arm64" if native == "amd64" else "amd64"
    assert (
        platform.ok("run", "--rm", "--platform", f"linux/{native}", "busybox", "echo", "native") == "native\n"
    )
    other = platform.cli("run", "--rm", "--platform", f"linux/{foreign}", "busybox", "true")
    assert other.returncode == 125, other.stderr
    assert f"is linux/{native}, not the requested linux/{foreign}" in other.stderr, other.stderr
    bad = platform.cli("run", "--rm", "--platform", "linux", "busybox", "true")
    assert bad.returncode == 125 and "unknown platform" in bad.stderr, bad.stderr
    assert platform.ok("ps", "-aq") == ""  # nothing was made by the refused ones
    if DOCKER is not None:
        refused = Docker(platform, workdir)(
            "run", "--rm", "--platform", f"linux/{foreign}", "busybox", "true"
        )
        assert refused.returncode == 125 and f"not the requested linux/{foreign}" in refused.stderr, (
            refused.stderr
        )
