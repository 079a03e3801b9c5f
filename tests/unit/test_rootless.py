"""The pure parts of dockyard.core.rootless: subid parsing, cgroup layout, decisions, the report."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from dockyard.cli.doctor import render
from dockyard.core import rootless
from dockyard.core.rootless import (
    MIN_SUBIDS,
    CgroupMode,
    Check,
    OciRuntimeChoice,
    RootlessFacts,
    SnapshotterChoice,
    SubIdRange,
    cgroup_mode,
    choose_oci_runtime,
    choose_snapshotter,
    delegated_controllers,
    next_free_subid_start,
    parse_subid,
    subid_problems,
)

# --- subid files -----------------------------------------------------------------------------------------


def test_parse_subid_skips_comments_blank_and_malformed_lines() -> None:
    text = """
# a comment
dockyard:100000:65536
broken line
alice:abc:65536
bob:200000
1002:300000:65536
:400000:10
"""
    assert parse_subid(text) == [
        SubIdRange("dockyard", 100000, 65536),
        SubIdRange("1002", 300000, 65536),
    ]


def test_a_full_range_of_ones_own_is_fine() -> None:
    ranges = parse_subid("other:100000:65536\ndockyard:165536:65536\n")
    assert subid_problems(ranges, "dockyard", 1001) == (65536, [])


def test_a_short_range_is_a_problem() -> None:
    total, problems = subid_problems(parse_subid("dockyard:100000:1000\n"), "dockyard", 1001)
    assert total == 1000
    assert problems == [f"dockyard has 1000 ids, needs ≥ {MIN_SUBIDS}"]


def test_short_ranges_add_up_and_numeric_owner_counts() -> None:
    ranges = parse_subid("dockyard:100000:32768\n1001:200000:32768\n")
    assert subid_problems(ranges, "dockyard", 1001) == (65536, [])


def test_no_entry_at_all() -> None:
    total, problems = subid_problems(parse_subid("alice:100000:65536\n"), "dockyard", 1001)
    assert total == 0
    assert problems == [f"dockyard has 0 ids, needs ≥ {MIN_SUBIDS}"]


def test_overlap_with_another_owner_is_a_problem() -> None:
    ranges = parse_subid("alice:100000:65536\ndockyard:165535:65536\n")
    total, problems = subid_problems(ranges, "dockyard", 1001)
    assert total == 65536
    assert problems == ["dockyard:165535:65536 overlaps alice:100000:65536"]


def test_adjacent_ranges_do_not_overlap() -> None:
    ranges = parse_subid("alice:100000:65536\ndockyard:165536:65536\nbob:231072:65536\n")
    assert subid_problems(ranges, "dockyard", 1001)[1] == []


def test_next_free_start_is_past_every_range() -> None:
    assert next_free_subid_start([]) == 100000
    assert next_free_subid_start(parse_subid("a:100000:65536\nb:10:5\n")) == 165536
    assert next_free_subid_start(parse_subid("a:500000:10\nb:100000:65536\n")) == 500010


def test_subid_check_suggests_a_free_range(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\n")
    c = rootless._subid("subuid", f, "dockyard", 1001)
    assert not c.ok
    assert "dockyard has 0 ids" in c.detail
    assert f"'dockyard:165536:65536' to {f}" in c.fix


def test_subid_check_on_an_unreadable_file(tmp_path: Path) -> None:
    c = rootless._subid("subuid", tmp_path / "missing", "dockyard", 1001)
    assert not c.ok
    assert "cannot read" in c.detail


# --- cgroups --------------------------------------------------------------------------------------------


def _touch(p: Path, text: str = "") -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_cgroup_v2(tmp_path: Path) -> None:
    _touch(tmp_path / "cgroup.controllers", "cpuset cpu io memory pids\n")
    assert cgroup_mode(tmp_path) is CgroupMode.V2


def test_cgroup_hybrid(tmp_path: Path) -> None:
    for c in ("memory", "pids", "cpu", "systemd"):
        (tmp_path / c).mkdir()
    _touch(tmp_path / "unified" / "cgroup.controllers", "")
    assert cgroup_mode(tmp_path) is CgroupMode.HYBRID


def test_cgroup_v1(tmp_path: Path) -> None:
    for c in ("memory", "cpu,cpuacct", "devices"):
        (tmp_path / c).mkdir()
    assert cgroup_mode(tmp_path) is CgroupMode.V1


def test_cgroup_none(tmp_path: Path) -> None:
    assert cgroup_mode(tmp_path) is CgroupMode.NONE
    assert cgroup_mode(tmp_path / "does-not-exist") is CgroupMode.NONE


def _v2_with_delegation(root: Path, uid: int, controllers: str) -> None:
    _touch(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    svc = root / "user.slice" / f"user-{uid}.slice" / f"user@{uid}.service"
    _touch(svc / "cgroup.controllers", controllers)


def test_delegated_controllers(tmp_path: Path) -> None:
    _v2_with_delegation(tmp_path, 1001, "cpu memory pids\n")
    assert delegated_controllers(tmp_path, 1001) == {"cpu", "memory", "pids"}
    assert delegated_controllers(tmp_path, 1002) == frozenset()


def test_limits_enforceable_with_a_delegated_v1_subtree_in_every_hierarchy(tmp_path: Path) -> None:
    # hybrid, as on this kind of host: every v1 hierarchy has a dockyard/ subtree (cpuset filled in)
    for h in ("memory", "cpu,cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd"):
        _touch(tmp_path / h / "cgroup.procs")
        _touch(tmp_path / h / "dockyard" / "cgroup.procs")
    _touch(tmp_path / "cpuset" / "dockyard" / "cpuset.cpus", "0-1\n")
    _touch(tmp_path / "cpuset" / "dockyard" / "cpuset.mems", "0\n")
    _touch(tmp_path / "unified" / "cgroup.controllers", "")
    check = rootless._cgroup_limits(tmp_path, 1001, cgroup_mode(tmp_path))
    assert check.ok, check.detail
    assert "--memory" in check.detail and "--pids-limit" in check.detail and "--cpus" in check.detail
    assert "containers get --pids-limit 2048 unless they set one" in check.detail

    # one hierarchy without the subtree: runc would fail every container with a cgroupsPath
    (tmp_path / "devices" / "dockyard" / "cgroup.procs").unlink()
    (tmp_path / "devices" / "dockyard").rmdir()
    check = rootless._cgroup_limits(tmp_path, 1001, cgroup_mode(tmp_path))
    assert not check.ok
    # what is missing is this user's own subtree (the shared one no longer serves), and how to make it
    assert f"*/dockyard/{_me()} is missing (in every hierarchy)" in check.detail
    assert "dockyard system delegate USER" in check.fix and "make setup" in check.fix


def test_limits_enforceable_with_this_users_own_subtree(tmp_path: Path) -> None:
    for h in ("memory", "cpu,cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd"):
        _touch(tmp_path / h / "cgroup.procs")
        _touch(tmp_path / h / "dockyard" / _me() / "cgroup.procs")
    _touch(tmp_path / "cpuset" / "dockyard" / _me() / "cpuset.cpus", "0-1\n")
    _touch(tmp_path / "cpuset" / "dockyard" / _me() / "cpuset.mems", "0\n")
    check = rootless._cgroup_limits(tmp_path, os.getuid(), cgroup_mode(tmp_path))
    assert check.ok, check.detail
    assert f"/*/dockyard/{_me()} delegated: enforces" in check.detail  # doctor names whose it is
    # v2: doctor judges as the platform will be, inside the user's subtree
    v2 = tmp_path / "v2"
    _touch(v2 / "cgroup.controllers", "cpuset cpu io memory pids\n")
    _touch(v2 / "dockyard" / _me() / "cgroup.procs")
    _touch(v2 / "dockyard" / _me() / "cgroup.subtree_control", "cpu io memory pids\n")
    check = rootless._cgroup_limits(v2, os.getuid(), cgroup_mode(v2))
    assert check.ok and f"cgroup v2, /sys/fs/cgroup/dockyard/{_me()} delegated" in check.detail, check.detail


def _me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def test_limits_not_enforceable_without_a_subtree(tmp_path: Path) -> None:
    _v2_with_delegation(tmp_path, 1001, "cpu memory pids\n")  # systemd's delegation alone is not used
    check = rootless._cgroup_limits(tmp_path, 1001, cgroup_mode(tmp_path))
    assert not check.ok and f"dockyard/{_me()} is missing" in check.detail
    assert "no default pids limit: a fork bomb" in check.detail  # doctor says what is at stake
    check = rootless._cgroup_limits(tmp_path / "none", 1001, CgroupMode.NONE)
    assert not check.ok and "no cgroup filesystem" in check.detail
    assert "no default pids limit" in check.detail


# --- decisions and records ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "fuse", "want"),
    [
        (True, True, SnapshotterChoice.OVERLAY),
        (True, False, SnapshotterChoice.OVERLAY),
        (False, True, SnapshotterChoice.FUSE_OVERLAYFS),
        (False, False, SnapshotterChoice.COPY),
    ],
)
def test_snapshotter_ladder(kernel: bool, fuse: bool, want: SnapshotterChoice) -> None:
    assert choose_snapshotter(kernel, fuse) is want


@pytest.mark.parametrize(
    ("runc", "crun", "want"),
    [
        (True, True, OciRuntimeChoice.CRUN),
        (True, False, OciRuntimeChoice.RUNC),
        (False, True, OciRuntimeChoice.CRUN),
        (False, False, OciRuntimeChoice.NONE),
    ],
)
def test_oci_runtime_prefers_crun_only_where_it_works(runc: bool, crun: bool, want: OciRuntimeChoice) -> None:
    assert choose_oci_runtime(runc, crun) is want


def _facts(*checks: Check, oci: OciRuntimeChoice = OciRuntimeChoice.RUNC) -> RootlessFacts:
    return RootlessFacts(
        user="dockyard",
        uid=1001,
        kernel="6.1.0",
        cgroup=CgroupMode.HYBRID,
        limits_enforceable=False,
        snapshotter=SnapshotterChoice.FUSE_OVERLAYFS,
        oci_runtime=oci,
        checks=checks,
    )


def test_facts_round_trip_through_json() -> None:
    facts = _facts(Check("runc", True, "ran"), Check("crun", False, "hybrid", "use runc", required=False))
    again = RootlessFacts.from_json(facts.to_json())
    assert again == facts
    assert again.check("crun").fix == "use runc"


def test_only_required_failures_make_the_host_not_ready() -> None:
    assert _facts(Check("runc", True, ""), Check("crun", False, "", required=False)).ok
    assert not _facts(Check("subuid", False, "")).ok
    assert not _facts(Check("runc", True, ""), oci=OciRuntimeChoice.NONE).ok


def test_render_marks_each_check_and_gives_fixes() -> None:
    facts = _facts(
        Check("user namespaces", True, "works"),
        Check("subuid", False, "dockyard has 0 ids", "run `make setup` as root"),
        Check("crun", False, "hybrid", "use runc", required=False),
    )
    out = render(facts).splitlines()
    assert out[:5] == [
        "✔ user namespaces — works",
        "✘ subuid — dockyard has 0 ids",
        "    fix: run `make setup` as root",
        "✘ crun — hybrid (optional)",
        "    fix: use runc",
    ]
    assert "snapshotter: fuse-overlayfs" in out
    assert "oci runtime: runc" in out
    assert out[-1] == "rootless containers: NOT ready (subuid)"


# --- probes never raise ---------------------------------------------------------------------------------


def test_a_crashing_probe_becomes_a_failed_check() -> None:
    def boom() -> Check:
        raise RuntimeError("kaput")

    c = rootless._guard("x", boom)
    assert c == Check("x", False, "probe crashed: RuntimeError: kaput", rootless.CRASH_FIX)


def test_missing_binary_is_a_failed_run() -> None:
    r = rootless._run(["/nonexistent/dockyard-no-such-binary"])
    assert r.rc == 127
    assert "not found" in r.message


def test_run_message_is_the_last_meaningful_line() -> None:
    noisy = rootless._Run(1, "unknown argument ignored: lazytime\n")
    assert noisy.message == "exit status 1"
    r = rootless._Run(1, "warn: x\ncgroups in hybrid mode not supported\nunknown argument ignored: a\n\n")
    assert r.message == "cgroups in hybrid mode not supported"


def test_device_checks(tmp_path: Path) -> None:
    assert rootless._device("/dev/null", "fix").ok
    missing = rootless._device(str(tmp_path / "nope"), "fix")
    assert not missing.ok and missing.detail == "missing"
