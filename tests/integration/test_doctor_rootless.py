"""``dockyard doctor`` run as the unprivileged ``dockyard`` user reports this host's real facts.

Needs root to switch user (CI runs as root) and the user made by ``make setup``
(deploy/setup/host.sh). The expectations are this machine kind's environment facts (DESIGN.md):
user namespaces, kernel overlay in a userns, fuse-overlayfs, runc all work; crun fails on the
cgroup v1/hybrid layout, so runc is chosen and resource limits cannot be enforced.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from typing import Any

import pytest

pytestmark = [
    pytest.mark.rootless,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the doctor as the dockyard user"),
]

USER = os.environ.get("DOCKYARD_USER", "dockyard")


def _doctor_as(user: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        pwd.getpwnam(user)
    except KeyError:
        pytest.fail(f"user {user!r} does not exist: run `make setup` (deploy/setup/host.sh) as root")
    return subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-m", "dockyard.cli.doctor", *args],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    p = _doctor_as(USER, "--format", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


def _check(facts: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in facts["checks"] if c["name"] == name)


def test_runs_as_the_unprivileged_user(facts: dict[str, Any]) -> None:
    assert facts["user"] == USER
    assert facts["uid"] == pwd.getpwnam(USER).pw_uid != 0
    assert _check(facts, "unprivileged user")["ok"]


@pytest.mark.parametrize(
    "name",
    [
        "user namespaces",
        "newuidmap",
        "newgidmap",
        "subuid",
        "subgid",
        "/dev/fuse",
        "kernel overlay in userns",
        "fuse-overlayfs",
        "runc",
        "/dev/net/tun",
        "slirp4netns",
        "rootlesskit",
    ],
)
def test_what_works_here(facts: dict[str, Any], name: str) -> None:
    c = _check(facts, name)
    assert c["ok"], c


def test_runc_really_ran_a_container(facts: dict[str, Any]) -> None:
    assert "ran a rootless container" in _check(facts, "runc")["detail"]


def test_crun_fails_on_hybrid_cgroups_and_runc_is_chosen(facts: dict[str, Any]) -> None:
    crun = _check(facts, "crun")
    assert not crun["ok"] and not crun["required"]
    assert "hybrid" in crun["detail"]
    assert facts["oci_runtime"] == "runc"


def test_cgroups_are_v1_hybrid_and_limits_enforced_through_the_delegated_subtree(
    facts: dict[str, Any],
) -> None:
    """`make setup` delegates /sys/fs/cgroup/<hierarchy>/dockyard to the user: limits are enforceable."""
    assert facts["cgroup"] in ("v1", "hybrid")
    assert facts["limits_enforceable"] is True
    limits = _check(facts, "cgroup limits")
    assert limits["ok"], limits
    assert "delegated" in limits["detail"] and "--memory" in limits["detail"]


def test_snapshotter_is_the_top_rung(facts: dict[str, Any]) -> None:
    assert facts["snapshotter"] == "overlayfs"
    assert facts["ok"] is True


def test_text_report_exit_zero_and_summary() -> None:
    p = _doctor_as(USER)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert "✔ fuse-overlayfs — /usr/bin/fuse-overlayfs mounts inside a user namespace" in lines
    assert any(ln.startswith("✘ crun — ") and ln.endswith("(optional)") for ln in lines)
    assert "oci runtime: runc" in lines
    assert "snapshotter: overlayfs" in lines
    assert lines[-1] == "rootless containers: ready"


def test_a_user_without_subids_is_told_what_to_fix() -> None:
    """The failure path on real files: `nobody` has no /etc/subuid range, so doctor exits 1."""
    p = _doctor_as("nobody")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "✘ subuid — /etc/subuid: nobody has 0 ids, needs ≥ 65536" in p.stdout
    assert "fix: run `make setup` as root" in p.stdout
    assert p.stdout.splitlines()[-1] == "rootless containers: NOT ready (subuid, subgid)"


def test_root_is_answered_for_the_user_the_platform_runs_as() -> None:
    """`dockyard doctor` typed as root checks the dockyard user, as `dockyard up` runs as it."""
    p = subprocess.run(
        [sys.executable, "-m", "dockyard.cli", "doctor", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["user"] == USER
    as_root = subprocess.run(
        [sys.executable, "-m", "dockyard.cli", "doctor", "--as-root"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert as_root.returncode == 1 and "running as root" in as_root.stdout


def test_doctor_proves_a_user_network_can_be_made_from_a_login_path() -> None:
    """A login shell has no /usr/sbin in PATH: doctor (and `network create`) still find the tools."""
    p = subprocess.run(
        ["runuser", "-u", USER, "--", "env", "PATH=/usr/local/bin:/usr/bin:/bin",
         sys.executable, "-m", "dockyard.cli.doctor", "--format", "json"],
        cwd="/", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    check = _check(json.loads(p.stdout), "user networks")
    assert check["ok"], check
