"""End to end: the platform on a full disk (issue #15, item 7), as the unprivileged user.

The state directory is on a real, small ext4 filesystem the test loop-mounts (root, as CI; ext4
because rootless overlay needs user xattrs; ``-m 0`` so the platform's user can fill every block).
A container fills it; then kill, stop and rm -f still work and leave nothing half-written, and
commit and pull fail with one line that names the full filesystem, leaving no partial files.

Before the fix every one of kill/stop/rm -f answered "internal error; see the service log" and the
containers stayed up: the first thing each did was rewrite container.json, which raised ENOSPC.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import Platform, busybox_platform, make_workdir

DISK_MB = 400


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path) -> None:
    """Grow ``path`` (as root) until its filesystem has no block left."""
    for chunk in (64 << 10, 512):  # then the last blocks, a few bytes at a time
        with contextlib.suppress(OSError), path.open("ab", buffering=0) as fh:  # ENOSPC: full
            while True:
                fh.write(b"\0" * chunk)


@pytest.fixture(scope="module")
def disk() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root (CI runs as root)")
    # not under pytest's basetemp: another pytest run sweeping old numbered dirs would reach
    # through the mount point and delete (and chmod) the live platform's files
    base = Path(tempfile.mkdtemp(prefix="dockyard-full-disk-"))
    image = base / "disk.img"
    subprocess.run(["truncate", "-s", f"{DISK_MB}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mnt = base / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield make_workdir(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def platform(disk: Path) -> Iterator[Platform]:
    with busybox_platform(disk) as p:
        yield p


def one_line_full(done: subprocess.CompletedProcess[str], disk: Path) -> None:
    """Failed with one line that says no space is left and names the filesystem."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no space left on device" in lines[0], lines[0]
    assert str(disk) in lines[0], lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in done.stderr


def leftovers(state: Path) -> list[str]:
    """Half-written files the runtime may leave: records' and store's temporaries."""
    runtime = state / "runtime"
    found = [str(p) for p in runtime.rglob("*.tmp")]
    found += [str(p) for p in runtime.rglob(".tmp-*")]
    return found


def test_kill_stop_and_rm_work_on_a_full_disk(platform: Platform, disk: Path) -> None:
    for name in ("to-kill", "to-stop", "to-rm"):
        platform.ok("run", "-d", "--name", name, "busybox", "sleep", "1000")
    platform.ok(
        "run", "-d", "--name", "filler", "busybox", "sh", "-c", "dd if=/dev/zero of=/big bs=1M; sleep 1000"
    )
    deadline = time.monotonic() + 60
    while free_bytes(disk) > 1 << 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    top = disk / "root-filler"
    fill(top)
    try:
        assert free_bytes(disk) == 0
        platform.ok("kill", "to-kill")
        assert platform.ok("wait", "to-kill").strip() == "137"
        platform.ok("stop", "-t", "1", "to-stop")
        platform.ok("rm", "-f", "to-rm")
        platform.ok("rm", "-f", "filler")  # its writable layer goes, and with it most of the fill
        ps = {
            row["Names"]: row
            for row in map(json.loads, platform.ok("ps", "-a", "--format", "json").splitlines())
        }
        assert set(ps) == {"to-kill", "to-stop"}, ps
        assert {name: row["State"] for name, row in ps.items()} == {"to-kill": "exited", "to-stop": "exited"}
        assert leftovers(platform.state_dir) == []
    finally:
        top.unlink()
    # the records kept in memory while the disk was full are as good as written: rm without -f
    platform.ok("rm", "to-kill", "to-stop")
    assert platform.ok("ps", "-aq") == ""


def test_commit_on_a_full_disk_is_one_line_and_leaves_nothing(platform: Platform, disk: Path) -> None:
    platform.ok(
        "run", "-d", "--name", "grown", "busybox", "sh", "-c", "head -c 2000000 /dev/urandom > /f; sleep 1000"
    )
    time.sleep(1)
    top = disk / "root-filler"
    fill(top)
    try:
        one_line_full(platform.cli("commit", "grown", "grown:1"), disk)
        assert leftovers(platform.state_dir) == []
    finally:
        top.unlink()
    platform.ok("commit", "grown", "grown:1")  # space again: it works
    platform.ok("rm", "-f", "grown")
    platform.ok("rmi", "grown:1")
