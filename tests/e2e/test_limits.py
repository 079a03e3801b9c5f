"""End to end: resource limits, pause, update and stats, proven by behaviour, as the unprivileged user.

The platform runs as `dockyard`; limits reach the kernel through the cgroup subtree ``make setup``
delegates to it (/sys/fs/cgroup/<hierarchy>/dockyard/dockyard on v1). The tests read the containers'
cgroup files (as root, or as anyone: they are world-readable) to see what the kernel did, never only
what we recorded: an OOM kill, a CPU share, refused forks, a frozen counter.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import USER, Platform, busybox_platform, make_workdir

from dockyard.core.cgroups import Delegation
from dockyard.core.cgroups import probe as probe_for


def probe() -> Delegation:
    """The subtree the platform's user has (its own dockyard/<user>, else the shared dockyard)."""
    return probe_for(user=USER)


ALLOCATE = 'x=$(head -c {n} /dev/zero | tr "\\0" x); echo kept {n}'  # a shell variable of n bytes


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("limits-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    delegation = probe()
    assert delegation.usable, f"no delegated cgroup subtree ({delegation.problems}): run `make setup` as root"
    with busybox_platform(workdir) as p:
        yield p


def _id(platform: Platform, name: str) -> str:
    cid: str = json.loads(platform.ok("inspect", "--type", "container", name))[0]["id"]
    return cid


def cgroup_file(cid: str, controller: str, name: str) -> Path:
    """The container's cgroup file (v1: per hierarchy; v2: one directory)."""
    d = probe()
    base = d.paths.get(controller) if d.mode == "v1" else d.paths.get("freezer")
    assert base is not None, f"no {controller} hierarchy"
    return base / cid / name


def cpu_ns(cid: str) -> int:
    if probe().mode == "v2":
        stat = dict(ln.split() for ln in cgroup_file(cid, "cpu", "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) * 1000
    return int(cgroup_file(cid, "cpuacct", "cpuacct.usage").read_text())


def _wait_for(what: str, check: object, deadline_s: float = 20.0) -> None:
    """Poll ``check`` until true; the deadline only bounds a broken run, it is not a speed claim."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"never happened: {what}")


def test_doctor_says_what_this_host_enforces(platform: Platform) -> None:
    out = platform.cli("doctor").stdout
    line = next(ln for ln in out.splitlines() if "cgroup limits" in ln)
    assert line.startswith("✔"), out
    for flag in ("--memory", "--cpus", "--pids-limit"):
        assert flag in line
    assert "containers get --pids-limit 2048 unless they set one" in line
    assert "resource limits: enforced" in out


def test_allocating_past_memory_is_oom_killed(platform: Platform) -> None:
    done = platform.cli(
        "run", "--name", "oom", "-m", "32m", "busybox", "sh", "-c", ALLOCATE.format(n=200_000_000)
    )
    assert done.returncode == 137, done.stderr
    state = json.loads(platform.ok("inspect", "oom"))[0]
    assert state["oomKilled"] is True and state["exitCode"] == 137
    assert state["spec"]["resources"]["memory"] == str(32 << 20)
    # the same limit leaves room for a small allocation: the limit, not the image, killed it
    small = platform.cli(
        "run", "--name", "fits", "-m", "32m", "busybox", "sh", "-c", ALLOCATE.format(n=4_000_000)
    )
    assert (small.returncode, small.stdout) == (0, "kept 4000000\n"), small.stderr
    assert "oomKilled" not in json.loads(platform.ok("inspect", "fits"))[0]
    # and without a limit the big one survives (this host has the memory)
    free = platform.cli("run", "--rm", "busybox", "sh", "-c", ALLOCATE.format(n=200_000_000))
    assert free.returncode == 0, free.stderr
    platform.ok("rm", "oom", "fits")


def test_half_a_cpu_is_about_half_a_core(platform: Platform) -> None:
    platform.ok("run", "-d", "--name", "spin", "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")
    cid = _id(platform, "spin")
    assert (
        cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "50000"
        if probe().mode == "v1"
        else True
    )
    used0, wall0 = cpu_ns(cid), time.monotonic_ns()
    time.sleep(3)
    used1, wall1 = cpu_ns(cid), time.monotonic_ns()
    share = (used1 - used0) / (wall1 - wall0)
    assert 0.1 < share < 0.7, f"a busy loop under --cpus 0.5 used {share:.2f} of a core"
    # stats sees the same thing
    row = json.loads(platform.ok("stats", "--no-stream", "--format", "json", "spin"))
    assert 10 < row["CPUPercent"] < 70 and row["CPUPerc"].endswith("%")
    platform.ok("rm", "-f", "spin")


def test_a_fork_bomb_stays_inside_pids_limit(platform: Platform) -> None:
    platform.ok(
        "run",
        "-d",
        "--name",
        "bomb",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "b() { b | b & }; b; sleep 600",
    )
    cid = _id(platform, "bomb")
    events = cgroup_file(cid, "pids", "pids.events")
    _wait_for("a fork refused at the limit", lambda: int(events.read_text().split()[1]) > 0)
    assert int(cgroup_file(cid, "pids", "pids.current").read_text()) <= 20
    assert json.loads(platform.ok("stats", "--no-stream", "--format", "json", "bomb"))["PIDsLimit"] == 20
    assert subprocess.run(["true"]).returncode == 0  # the host still forks
    platform.ok("rm", "-f", "bomb")  # runc kill reaches every process through the cgroup
    for base in probe().paths.values():
        assert not (base / cid).exists(), f"{base / cid} left behind"


def test_a_fork_bomb_without_flags_is_held_by_the_default_and_the_platform_serves(platform: Platform) -> None:
    # issue 15: without a default pids limit this bomb used up the platform user's processes and
    # the runtime aborted (pthread_create failed); `rm -f` then said "runtime unreachable".
    platform.ok("run", "-d", "--name", "dbomb", "busybox", "sh", "-c", "f(){ f|f& }; f; sleep 600")
    cid = _id(platform, "dbomb")
    assert cgroup_file(cid, "pids", "pids.max").read_text().strip() == "2048"
    events = cgroup_file(cid, "pids", "pids.events")
    _wait_for("a fork refused at the default limit", lambda: int(events.read_text().split()[1]) > 0, 60)
    assert int(cgroup_file(cid, "pids", "pids.current").read_text()) <= 2048
    assert "dbomb" in platform.ok("ps", timeout=120)  # the runtime answers while the bomb goes on
    assert "runtime default --pids-limit 2048" in platform.ok("info", timeout=120)
    platform.ok("rm", "-f", "dbomb", timeout=120)
    assert platform.ok("run", "--rm", "busybox", "echo", "alive", timeout=120).strip() == "alive"


def test_pids_limit_0_is_unlimited_as_docker(platform: Platform) -> None:
    platform.ok("run", "-d", "--name", "nolimit", "--pids-limit", "0", "busybox", "sleep", "600")
    cid = _id(platform, "nolimit")
    assert cgroup_file(cid, "pids", "pids.max").read_text().strip() == "max"
    platform.ok("rm", "-f", "nolimit")


def test_pause_freezes_and_unpause_thaws(platform: Platform) -> None:
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
    if probe().mode == "v1":
        assert cgroup_file(cid, "freezer", "freezer.state").read_text().strip() == "FROZEN"
    assert "(Paused)" in platform.ok("ps", "--filter", "name=ticker")
    refused = platform.cli("exec", "ticker", "true")
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1
    frozen = ticks()
    time.sleep(1.0)  # twenty ticks' worth
    assert ticks() == frozen, "the counter advanced while paused"
    platform.ok("unpause", "ticker")
    _wait_for("the counter to move again", lambda: ticks() > frozen + 3)
    platform.ok("pause", "ticker")
    platform.ok("stop", "-t", "1", "ticker")  # a paused container can be stopped
    assert json.loads(platform.ok("inspect", "ticker"))[0]["state"] == "exited"
    platform.ok("rm", "ticker")


def test_update_changes_live_limits(platform: Platform) -> None:
    platform.ok("run", "-d", "--name", "upd", "-m", "256m", "busybox", "sleep", "600")
    cid = _id(platform, "upd")
    assert platform.ok("exec", "upd", "sh", "-c", ALLOCATE.format(n=60_000_000)) == "kept 60000000\n"
    assert (
        platform.ok("update", "--memory", "32m", "--memory-swap", "64m", "--pids-limit", "8", "upd")
        == "upd\n"
    )
    if probe().mode == "v1":
        assert int(cgroup_file(cid, "memory", "memory.limit_in_bytes").read_text()) == 32 << 20
        assert int(cgroup_file(cid, "memory", "memory.memsw.limit_in_bytes").read_text()) == 64 << 20
    killed = platform.cli("exec", "upd", "sh", "-c", ALLOCATE.format(n=60_000_000))
    assert killed.returncode == 137, killed.stderr  # the same allocation is now past the live limit
    forks = platform.cli(
        "exec", "upd", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; wait"
    )
    assert int(cgroup_file(cid, "pids", "pids.events").read_text().split()[1]) > 0, forks.stderr
    resources = json.loads(platform.ok("inspect", "upd"))[0]["spec"]["resources"]
    assert resources == {"memory": str(32 << 20), "memorySwap": str(64 << 20), "pidsLimit": "8"}
    platform.ok("update", "--pids-limit", "-1", "--cpus", "1.5", "upd")
    assert cgroup_file(cid, "pids", "pids.max").read_text().strip() == "max"
    if probe().mode == "v1":
        assert cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "150000"
    # the limits are the container's: a restart starts it with them
    platform.ok("restart", "-t", "1", "upd")
    assert (
        int(cgroup_file(cid, "memory", "memory.limit_in_bytes").read_text()) == 32 << 20
        if probe().mode == "v1"
        else True
    )
    platform.ok("rm", "-f", "upd")


def test_stats_columns_json_and_stream(platform: Platform) -> None:
    platform.ok("run", "-d", "--name", "st1", "-m", "64m", "busybox", "sleep", "600")
    platform.ok("run", "-d", "--name", "st2", "busybox", "sh", "-c", "sleep 600 & sleep 600 & wait")
    table = platform.ok("stats", "--no-stream", "st1", "st2").splitlines()
    assert re.split(r" {2,}", table[0]) == [
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"
    ]  # fmt: skip
    rows = {
        json.loads(ln)["Name"]: json.loads(ln)
        for ln in platform.ok("stats", "--no-stream", "--format", "json").splitlines()
    }
    assert {"st1", "st2"} <= set(rows)
    assert rows["st1"]["MemoryLimitBytes"] == 64 << 20 and rows["st1"]["MemUsage"].endswith("/ 64MiB")
    assert rows["st1"]["PIDsCurrent"] == 1 and rows["st2"]["PIDsCurrent"] == 3
    assert rows["st1"]["FromCgroup"] and rows["st1"]["MemoryBytes"] > 0
    assert rows["st1"]["NetTxBytes"] >= 0 and "/" in rows["st1"]["NetIO"]
    # streaming: a new sample every interval until the client goes away
    proc = subprocess.Popen(
        [*platform_cli(platform), "stats", "--format", "json", "st1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
        assert first["Name"] == second["Name"] == "st1"
    finally:
        proc.kill()
        proc.wait()
    missing = platform.cli("stats", "--no-stream", "nosuch")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "nosuch" in missing.stderr
    platform.ok("rm", "-f", "st1", "st2")


def platform_cli(platform: Platform) -> list[str]:
    import sys

    return [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-m", "lots"], "invalid size for --memory: 'lots'"),
        (["--cpus", "99"], "--cpus: range is 0.01 to"),
        (["-m", "1m"], "minimum memory limit is 6MiB"),
        (["--memory-swap", "64m"], "--memory-swap needs --memory"),
    ],
)
def test_bad_limits_are_one_line(platform: Platform, flags: list[str], message: str) -> None:
    done = platform.cli("run", "--rm", *flags, "busybox", "true")
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
