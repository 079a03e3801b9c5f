"""End to end: a second member of the `dockyard` group gets limits, pause and a survivable fork bomb.

Issue 15: only the user `dockyard` had a cgroup (the shared /sys/fs/cgroup/<hierarchy>/dockyard), so
any other member's platform ran containers with no cgroup at all: no default pids limit, no pause,
and a fork bomb used up the processes its runtime needed. ``make setup`` now gives every member
its own ``dockyard/<user>`` (``dockyard system delegate USER``); here the platform runs as
`dockyard-peer` (a member made by setup) and the kernel's cgroup files show what was enforced.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import PYTHON, Platform, as_user, busybox_platform, make_workdir

from dockyard.core.cgroups import CGROUP_ROOT, DEFAULT_PIDS_LIMIT, probe, user_subtree

PEER = "dockyard-peer"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """Outside /tmp/pytest-of-root: another pytest session starting on this machine resets that to
    0700, and the peer's running platform then loses its own state (seen: EACCES mid-test)."""
    try:
        pwd.getpwnam(PEER)
    except KeyError:
        pytest.fail(f"user {PEER!r} missing: run `make setup` as root (it makes a second group member)")
    path = Path(tempfile.mkdtemp(prefix="dockyard-delegation-e2e-"))
    try:
        yield make_workdir(path, PEER)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    delegation = probe(user=PEER)
    assert delegation.usable and delegation.subtree == user_subtree(PEER), (
        f"{PEER} has no cgroup subtree of its own ({delegation.problems}): run `make setup` as root"
    )
    with busybox_platform(workdir, PEER) as p:
        yield p


def _id(platform: Platform, name: str) -> str:
    cid: str = json.loads(platform.ok("inspect", "--type", "container", name))[0]["id"]
    return cid


def peer_file(cid: str, controller: str, name: str) -> Path:
    """The container's cgroup file inside the peer's own subtree (v1: per hierarchy)."""
    d = probe(user=PEER)
    base = d.paths[controller] if d.mode == "v1" else CGROUP_ROOT / user_subtree(PEER)
    return base / cid / name


def _wait_for(what: str, check: object, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"never happened: {what}")


def test_doctor_as_the_peer_names_its_own_subtree(platform: Platform) -> None:
    out = subprocess.run(
        [*as_user(PEER), PYTHON, "-m", "dockyard.cli", "doctor"], capture_output=True, text=True, timeout=120
    ).stdout
    line = next(ln for ln in out.splitlines() if "cgroup limits" in ln)
    assert line.startswith("✔") and f"/dockyard/{PEER} delegated: enforces" in line, out


def test_the_peers_containers_get_limits_in_its_own_subtree(platform: Platform) -> None:
    platform.ok("run", "-d", "--name", "plain", "busybox", "sleep", "600")
    platform.ok("run", "-d", "--name", "capped", "--pids-limit", "20", "busybox", "sleep", "600")
    plain, capped = _id(platform, "plain"), _id(platform, "capped")
    assert peer_file(plain, "pids", "pids.max").read_text().strip() == str(DEFAULT_PIDS_LIMIT)
    assert peer_file(capped, "pids", "pids.max").read_text().strip() == "20"
    pid = json.loads(platform.ok("inspect", "capped"))[0]["pid"]
    assert str(pid) in peer_file(capped, "pids", "cgroup.procs").read_text().split()
    # forks past the limit are refused by the kernel, inside the container
    forty = "for i in $(seq 40); do sleep 60 </dev/null >/dev/null 2>&1 & done; echo all forked"
    refused = platform.cli("exec", "capped", "sh", "-c", forty)
    assert "can't fork" in refused.stderr and "all forked" not in refused.stdout, refused
    assert int(peer_file(capped, "pids", "pids.current").read_text()) <= 20
    assert int(peer_file(capped, "pids", "pids.events").read_text().split()[1]) > 0
    platform.ok("rm", "-f", "plain", "capped")
    for base in probe(user=PEER).paths.values():
        assert not (base / plain).exists() and not (base / capped).exists()


def test_pause_works_for_the_peer(platform: Platform) -> None:
    platform.ok(
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done",
    )
    cid = _id(platform, "ticker")

    def ticks() -> int:
        return len(platform.ok("logs", "ticker").split())

    _wait_for("the counter to tick", lambda: ticks() > 3)
    platform.ok("pause", "ticker")
    if probe(user=PEER).mode == "v1":
        assert peer_file(cid, "freezer", "freezer.state").read_text().strip() == "FROZEN"
    frozen = ticks()
    time.sleep(1.0)  # twenty ticks' worth
    assert ticks() == frozen, "the counter advanced while paused"
    platform.ok("unpause", "ticker")
    _wait_for("the counter to move again", lambda: ticks() > frozen + 3)
    platform.ok("rm", "-f", "ticker")


def test_a_fork_bomb_leaves_the_peers_runtime_answering(platform: Platform) -> None:
    # Never start a bomb that nothing holds: without a cgroup it takes every pid on the host (seen
    # with the code before this change: 32 366 processes, pid_max, until killed by hand).
    platform.ok("run", "-d", "--name", "guard", "busybox", "sleep", "600")
    guard = peer_file(_id(platform, "guard"), "pids", "pids.max")
    assert guard.is_file() and guard.read_text().strip() == str(DEFAULT_PIDS_LIMIT), "no pids limit"
    platform.ok("rm", "-f", "guard")
    platform.ok("run", "-d", "--name", "bomb", "busybox", "sh", "-c", "f(){ f|f& }; f; sleep 600")
    cid = _id(platform, "bomb")
    events = peer_file(cid, "pids", "pids.events")
    _wait_for("a fork refused at the default limit", lambda: int(events.read_text().split()[1]) > 0, 60)
    assert int(peer_file(cid, "pids", "pids.current").read_text()) <= DEFAULT_PIDS_LIMIT
    began = time.monotonic()
    assert "bomb" in platform.ok("ps", timeout=120)  # the runtime answers while the bomb goes on
    platform.ok("rm", "-f", "bomb", timeout=120)
    took = time.monotonic() - began
    assert platform.ok("run", "--rm", "busybox", "echo", "alive", timeout=120).strip() == "alive"
    print(f"ps + rm -f during the bomb: {took:.1f} s")
