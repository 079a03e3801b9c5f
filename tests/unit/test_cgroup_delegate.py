"""`dockyard system delegate USER` and the function behind it (also make setup's): a user's own cgroup
subtree made over a fake cgroup root, idempotently, and one clear line when it cannot be done.

A fake tree is a plain directory, so what the kernel would add on mkdir (cgroup.procs, empty
cpuset.cpus, …) the tests add between calls. Handing a directory to another user needs root."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.core.cgroups import DelegationError, delegate, group_members, probe

USER = "nobody"
V1 = ("memory", "cpu,cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="handing a cgroup to a user needs root")


def _touch(p: Path, text: str = "") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _v1_root(root: Path) -> Path:
    for h in V1:
        _touch(root / h / "cgroup.procs")
    _touch(root / "cpuset" / "cpuset.cpus", "0-1\n")
    _touch(root / "cpuset" / "cpuset.mems", "0\n")
    (root / "cpu").symlink_to("cpu,cpuacct")  # as on real hosts: one hierarchy, two names
    _touch(root / "unified" / "cgroup.controllers", "")  # hybrid: not a v1 hierarchy
    return root


def _kernel_fills_in(d: Path, cpuset: bool) -> None:
    """What cgroupfs puts in a new cgroup directory (the part delegate touches)."""
    for f in ("cgroup.procs", "tasks"):
        _touch(d / f)
    if cpuset:
        _touch(d / "cpuset.cpus", "\n")
        _touch(d / "cpuset.mems", "\n")


@needs_root
def test_v1_every_hierarchy_gets_the_users_subtree_once(tmp_path: Path) -> None:
    root = _v1_root(tmp_path)
    pw = pwd.getpwnam(USER)
    first = delegate(USER, root)
    mine = [root / h / "dockyard" / USER for h in V1]
    assert all(d.is_dir() for d in mine)
    assert not (root / "unified" / "dockyard").exists()
    assert sum("created cgroup" in a for a in first.actions) == 2 * len(V1)  # "cpu" -> "cpu,cpuacct": once
    assert first.warnings == []

    for h in V1:
        for d in (root / h / "dockyard", root / h / "dockyard" / USER):
            _kernel_fills_in(d, cpuset=h == "cpuset")
    second = delegate(USER, root)
    assert any(a.startswith("copied cpuset.cpus into") for a in second.actions)
    assert (root / "cpuset" / "dockyard" / USER / "cpuset.cpus").read_text() == "0-1\n"
    for d in mine:
        for f in (d, d / "cgroup.procs", d / "tasks"):
            assert (f.stat().st_uid, f.stat().st_gid) == (pw.pw_uid, pw.pw_gid), f
    top = root / "memory" / "dockyard"
    assert top.stat().st_uid == 0  # the parent stays root's: no user may touch another's subtree

    assert delegate(USER, root).actions == []  # idempotent: nothing left to do
    found = probe(root, user=USER)
    assert found.usable and found.subtree == f"dockyard/{USER}"


@needs_root
def test_v2_the_users_subtree_and_its_controllers(tmp_path: Path) -> None:
    _touch(tmp_path / "cgroup.controllers", "cpuset cpu io memory hugetlb pids\n")
    _touch(tmp_path / "cgroup.subtree_control", "memory\n")
    (tmp_path / "dockyard").mkdir()
    _touch(tmp_path / "dockyard" / "cgroup.subtree_control")
    first = delegate(USER, tmp_path)
    sub = tmp_path / "dockyard" / USER
    assert sub.is_dir() and sub.stat().st_uid == pwd.getpwnam(USER).pw_uid
    enabled = [a for a in first.actions if a.startswith("enabled the")]
    # every ancestor enables each controller for its children; memory was on at the root already
    assert f"enabled the pids controller in {tmp_path}/dockyard/cgroup.subtree_control" in enabled
    assert f"enabled the cpu controller in {tmp_path}/cgroup.subtree_control" in enabled
    assert not any("memory controller in " + f"{tmp_path}/cgroup" in a for a in enabled)
    assert not any("hugetlb" in a for a in enabled)
    assert first.warnings == [f"{sub}/cgroup.subtree_control is missing: cannot enable controllers there"]

    all_on = "cpu cpuset io memory pids\n"  # what the kernel shows once the writes took
    for d in (tmp_path, tmp_path / "dockyard", sub):
        _touch(d / "cgroup.subtree_control", all_on)
    _touch(sub / "cgroup.procs")
    again = delegate(USER, tmp_path)
    assert again.actions == [f"gave cgroup {sub} to {USER}"]  # the new cgroup.procs; nothing else
    assert delegate(USER, tmp_path).actions == []


def test_an_unknown_user_or_no_cgroup_filesystem(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        delegate("no-such-user-dockyard", tmp_path)
    with pytest.raises(DelegationError, match="no cgroup hierarchy under"):
        delegate(USER, tmp_path / "empty")


def test_group_members_count_primary_group_members_too() -> None:
    assert "root" in group_members("root")  # gid 0 is root's primary group, /etc/group lists nobody
    assert group_members("no-such-group-dockyard") == []


# --- the command --------------------------------------------------------------------------------------


def _cli(*args: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", "--reuid", as_user, "--regid", "nogroup", "--clear-groups", "--"] if as_user else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "dockyard.cli", "system", "delegate", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_root
def test_the_command_refuses_with_one_line(tmp_path: Path) -> None:
    not_root = _cli(USER, as_user=USER)
    assert not_root.returncode == 1 and not_root.stdout == ""
    assert not_root.stderr == (
        f"dockyard system delegate: must run as root (try: sudo dockyard system delegate {USER})\n"
    )
    unknown = _cli("no-such-user-dockyard", "--cgroup-root", str(tmp_path))
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "dockyard system delegate: no such user 'no-such-user-dockyard'\n",
    )
    nothing = _cli(USER, "--cgroup-root", str(tmp_path / "empty"))
    assert nothing.returncode == 1 and nothing.stderr.count("\n") == 1
    assert "no cgroup hierarchy under" in nothing.stderr and not list(tmp_path.iterdir())


@needs_root
def test_the_command_delegates_and_says_so_then_says_nothing_to_do(tmp_path: Path) -> None:
    root = _v1_root(tmp_path)
    first = _cli(USER, "--cgroup-root", str(root))
    assert first.returncode == 0, first.stderr
    assert f"created cgroup {root}/pids/dockyard/{USER}" in first.stdout.splitlines()
    again = _cli(USER, "--cgroup-root", str(root))
    assert (
        again.returncode == 0
        and again.stdout == f"{root}/…/dockyard/{USER} is already {USER}'s: nothing to do\n"
    )
