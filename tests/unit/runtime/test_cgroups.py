"""Resource limits without a kernel: the delegation decision over fake cgroup trees, the OCI
resources a limit becomes, samples and OOM read from fake cgroup files, the CLI's parsing, and the
refusal of a limit by a node that has no writable cgroup (through the real ContainerManager)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pwd
import tarfile
from pathlib import Path

import pytest
from image_test_support import ListPublisher

from dockyard.cli import limits as cli_limits
from dockyard.core.cgroups import Delegation, enter_v2_subtree, probe
from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.core.rootless import SnapshotterChoice
from dockyard.runtime import ocispec
from dockyard.runtime.cgroups import Cgroups, Limits, oci_resources
from dockyard.runtime.containers import ContainerManager
from dockyard.runtime.images.store import ImageStore
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.network import Slirp
from dockyard.runtime.records import ContainerConfig
from dockyard.runtime.snapshot import snapshotter_for

V1 = ("memory", "cpu,cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd")


def _touch(p: Path, text: str = "") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def fake_v1(root: Path, *, delegated: tuple[str, ...] = V1, subtree: str = "dockyard") -> Path:
    """A v1 (hybrid) tree with ``subtree`` in the ``delegated`` hierarchies: "dockyard" is the older
    shared layout, "dockyard/<user>" a user's own."""
    for h in V1:
        _touch(root / h / "cgroup.procs")
    for h in delegated:
        _touch(root / h / subtree / "cgroup.procs")
    if "cpuset" in delegated:
        _touch(root / "cpuset" / subtree / "cpuset.cpus", "0-1\n")
        _touch(root / "cpuset" / subtree / "cpuset.mems", "0\n")
    if "memory" in delegated:
        _touch(root / "memory" / subtree / "memory.memsw.limit_in_bytes", "9223372036854771712\n")
    _touch(root / "unified" / "cgroup.controllers", "")  # hybrid: the empty v2 hierarchy is ignored
    return root


def fake_v2(root: Path, enabled: str = "cpu io memory pids", subtree: str = "dockyard") -> Path:
    _touch(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    _touch(root / subtree / "cgroup.procs")
    _touch(root / subtree / "cgroup.subtree_control", enabled + "\n")
    _touch(root / subtree / "memory.swap.max", "max\n")
    return root


# --- the decision --------------------------------------------------------------------------------------


def test_v1_with_every_hierarchy_delegated_enforces_every_limit(tmp_path: Path) -> None:
    d = probe(fake_v1(tmp_path))
    assert d.mode == "v1" and d.usable and d.problems == ()
    assert d.enforceable == ["--memory", "--memory-swap", "--cpus", "--cpu-shares", "--pids-limit"]
    assert d.paths["cpuacct"] == tmp_path / "cpu,cpuacct" / "dockyard"  # "cpu,cpuacct" names two
    assert d.paths["name=systemd"] == tmp_path / "systemd" / "dockyard"
    assert d.missing(["--memory", "--pids-limit"]) is None


@pytest.mark.parametrize("absent", ["devices", "systemd", "memory"])
def test_one_hierarchy_without_the_subtree_makes_v1_unusable(tmp_path: Path, absent: str) -> None:
    d = probe(
        fake_v1(tmp_path, delegated=tuple(h for h in V1 if h != absent), subtree="dockyard/alice"),
        user="alice",
    )
    assert not d.usable and d.enforceable == []
    line = d.missing(["--memory"])
    assert line is not None and "\n" not in line
    assert line.startswith("--memory: cannot enforce resource limits on this host")
    # what to fix is the user's own subtree, and how
    assert f"{absent}/dockyard/alice is missing" in line and "dockyard system delegate USER" in line


def test_an_empty_cpuset_subtree_is_a_problem_runc_would_hit(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    (tmp_path / "cpuset" / "dockyard" / "cpuset.cpus").write_text("\n")
    d = probe(tmp_path, user="")  # no user name: only the shared layout is looked at
    assert not d.usable and "cpuset.cpus" in d.problems[0]


def test_no_cgroup_at_all(tmp_path: Path) -> None:
    d = probe(tmp_path / "nothing")
    assert not d.usable and d.mode == "none"
    assert "--pids-limit: cannot enforce" in (d.missing(["--pids-limit"]) or "")


def test_v2_needs_the_subtree_its_controllers_and_the_process_inside(tmp_path: Path) -> None:
    d = probe(fake_v2(tmp_path), own_v2="/dockyard/platform")
    assert d.mode == "v2" and d.usable
    assert d.enforceable == ["--memory", "--memory-swap", "--cpus", "--cpu-shares", "--pids-limit"]

    outside = probe(tmp_path, own_v2="/user.slice/session-1.scope", user="")
    assert not outside.usable and "outside /dockyard" in outside.problems[0]

    partial = probe(fake_v2(tmp_path / "p", enabled="memory pids"), own_v2="/dockyard/platform")
    assert partial.usable and partial.missing(["--memory"]) is None
    assert "lacks the cpu controller" in (partial.missing(["--cpus"]) or "")

    _touch(tmp_path / "bare" / "cgroup.controllers", "cpu memory pids\n")  # v2, nothing delegated
    bare = probe(tmp_path / "bare", own_v2="/dockyard/platform", user="alice")
    assert "bare/dockyard/alice is missing" in bare.problems[0]


# --- a subtree per user -------------------------------------------------------------------------------


def test_a_users_own_v1_subtree_is_found_and_containers_go_inside_it(tmp_path: Path) -> None:
    root = fake_v1(tmp_path, subtree="dockyard/alice")
    d = probe(root, user="alice")
    assert d.usable and d.subtree == "dockyard/alice" and d.problems == ()
    assert d.paths["pids"] == root / "pids" / "dockyard" / "alice"
    assert d.enforceable == ["--memory", "--memory-swap", "--cpus", "--cpu-shares", "--pids-limit"]
    assert "/*/dockyard/alice delegated: enforces" in d.summary()
    assert Cgroups(d).cgroups_path("c0ffee") == "/dockyard/alice/c0ffee"


def test_another_users_subtree_is_not_used(tmp_path: Path) -> None:
    root = fake_v1(tmp_path, subtree="dockyard/alice")
    bob = probe(root, user="bob")
    assert not bob.usable
    assert bob.problems == (f"{tmp_path}/*/dockyard/bob is missing (in every hierarchy)",)  # one clause


def test_the_shared_layout_is_the_fallback_and_the_own_subtree_wins(tmp_path: Path) -> None:
    shared = probe(fake_v1(tmp_path), user="alice")  # only dockyard/, as hosts set up before
    assert shared.usable and shared.subtree == "dockyard"
    assert Cgroups(shared).cgroups_path("c") == "/dockyard/c"
    assert "no subtree of this user's own" in shared.summary()
    fake_v1(tmp_path, subtree="dockyard/alice")  # both: alice's own is chosen
    own = probe(tmp_path, user="alice")
    assert own.subtree == "dockyard/alice" and own.paths["memory"] == tmp_path / "memory/dockyard/alice"


def test_v1_needs_the_users_subtree_in_every_hierarchy(tmp_path: Path) -> None:
    d = probe(fake_v1(tmp_path, delegated=V1[:-1], subtree="dockyard/alice"), user="alice")
    assert not d.usable and d.problems == (f"{tmp_path}/systemd/dockyard/alice is missing",)


def test_a_users_own_v2_subtree_and_the_platform_inside_it(tmp_path: Path) -> None:
    root = fake_v2(tmp_path, subtree="dockyard/alice")
    inside = probe(root, own_v2="/dockyard/alice/platform", user="alice")
    assert inside.usable and inside.subtree == "dockyard/alice"
    assert inside.paths["memory"] == root / "dockyard" / "alice"
    assert Cgroups(inside).cgroups_path("c") == "/dockyard/alice/c"
    # doctor runs outside; it judges as the platform will be once `dockyard up` put itself inside
    assert probe(root, own_v2="/user.slice", user="alice", as_platform=True).usable
    outside = probe(root, own_v2="/dockyard/platform", user="alice")  # the shared leaf: not alice's
    assert not outside.usable and "outside /dockyard/alice" in outside.problems[0]


def test_enter_v2_subtree_uses_the_users_own_leaf(tmp_path: Path) -> None:
    root = fake_v2(tmp_path, subtree=f"dockyard/{_me()}")
    assert enter_v2_subtree(os.getuid(), os.getgid(), root, pid=4242)
    assert (root / "dockyard" / _me() / "platform" / "cgroup.procs").read_text() == "4242\n"
    assert not (root / "dockyard" / "platform").exists()
    assert not enter_v2_subtree(os.getuid(), os.getgid(), fake_v1(tmp_path / "v1"), pid=1)  # v1: no-op


def _me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


# --- limits → linux.resources ------------------------------------------------------------------------


def test_resources_follow_docker() -> None:
    half = Limits(memory=64 << 20, nano_cpus=500_000_000, cpu_shares=512, pids_limit=20)
    assert oci_resources(half, swap_accounting=True) == {
        "memory": {"limit": 64 << 20, "swap": 128 << 20},  # unset swap: twice the memory
        "cpu": {"quota": 50_000, "period": 100_000, "shares": 512},
        "pids": {"limit": 20},
    }
    assert (
        oci_resources(Limits(memory=64 << 20, memory_swap=-1), swap_accounting=True)["memory"]["swap"] == -1
    )
    assert "swap" not in oci_resources(Limits(memory=64 << 20), swap_accounting=False)["memory"]
    assert oci_resources(Limits(), swap_accounting=True) == {}
    lifted = oci_resources(Limits(pids_limit=5), swap_accounting=True, lifting=True)
    assert lifted["memory"] == {"limit": -1, "swap": -1} and lifted["cpu"]["quota"] == -1
    assert lifted["pids"] == {"limit": 5}


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(memory=1 << 20), "minimum memory limit is 6MiB"),
        (Limits(memory_swap=64 << 20), "--memory-swap needs --memory"),
        (Limits(memory=64 << 20, memory_swap=32 << 20), "at least --memory"),
        (Limits(nano_cpus=3 * 10**9), "range is 0.01 to 2.00"),
        (Limits(cpu_shares=1), "--cpu-shares: range is 2 to 262144"),
        (Limits(pids_limit=-5), "--pids-limit"),
    ],
)
def test_bad_limits_are_one_line(limits: Limits, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        limits.validate(cpus=2)


def test_the_spec_gets_cgroups_path_and_resources_only_with_a_cgroup() -> None:
    run = ocispec.RunConfig(cgroups_path="/dockyard/abc", resources={"pids": {"limit": 20}})
    assert ocispec._resources(run) == {"cgroupsPath": "/dockyard/abc", "resources": {"pids": {"limit": 20}}}
    assert ocispec._resources(ocispec.RunConfig(cgroups_path="/dockyard/abc")) == {
        "cgroupsPath": "/dockyard/abc"
    }
    assert ocispec._resources(ocispec.RunConfig()) == {}


def test_limits_survive_the_record_round_trip() -> None:
    from dockyard.runtime.records import ContainerRecord

    record = ContainerRecord(
        "id1", "n", ContainerConfig(image="i", limits=Limits(memory=64 << 20, pids_limit=9)), "sha256:x", "t"
    )
    again = ContainerRecord.from_json(record.to_json())
    assert again.config.limits == Limits(memory=64 << 20, pids_limit=9)
    doc = json.loads(record.to_json())
    del doc["config"]["limits"]  # a record written before limits existed
    assert ContainerRecord.from_json(json.dumps(doc)).config.limits == Limits()


# --- samples and OOM from cgroup files ------------------------------------------------------------


def test_v1_sample_and_oom_read_from_the_containers_cgroup(tmp_path: Path) -> None:
    root = fake_v1(tmp_path)
    cg = Cgroups(probe(root))
    cid = "c0ffee"
    _touch(root / "memory" / "dockyard" / cid / "memory.usage_in_bytes", "10485760\n")
    _touch(root / "memory" / "dockyard" / cid / "memory.stat", "cache 1\ntotal_inactive_file 2097152\n")
    _touch(root / "memory" / "dockyard" / cid / "memory.limit_in_bytes", str(64 << 20))
    _touch(
        root / "memory" / "dockyard" / cid / "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    )
    _touch(root / "cpu,cpuacct" / "dockyard" / cid / "cpuacct.usage", "1500000000\n")
    _touch(root / "pids" / "dockyard" / cid / "pids.current", "7\n")
    _touch(root / "pids" / "dockyard" / cid / "pids.max", "max\n")
    _touch(
        root / "blkio" / "dockyard" / cid / "blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 4096\n8:0 Write 8192\n8:16 Read 4096\nTotal 16384\n",
    )
    s = cg.sample(cid, 0)
    assert s is not None
    assert (s.memory_usage, s.memory_limit, s.cpu_ns) == (8 << 20, 64 << 20, 1_500_000_000)
    assert (s.pids, s.pids_limit, s.block_read, s.block_write) == (7, 0, 8192, 8192)
    assert cg.cgroups_path(cid) == f"/dockyard/{cid}"
    assert not cg.oom_killed(cid)
    _touch(
        root / "memory" / "dockyard" / cid / "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    )
    assert cg.oom_killed(cid)

    for f in list((root / "pids" / "dockyard" / cid).iterdir()):
        f.unlink()  # cgroupfs dirs hold only virtual files; a fake one must be emptied to rmdir
    cg.remove(cid)
    assert not (root / "pids" / "dockyard" / cid).exists()


def test_no_cgroup_means_no_path_and_no_sample() -> None:
    cg = Cgroups(Delegation("none", False, problems=("x",)))
    assert cg.cgroups_path("c") == "" and cg.sample("c", 1) is None and not cg.oom_killed("c")
    cg.check(Limits())  # no limit asked: fine
    cg.check(Limits(pids_limit=-1))  # "unlimited" asks nothing
    with pytest.raises(FailedPrecondition, match="--memory, --cpus: cannot enforce"):
        cg.check(Limits(memory=64 << 20, nano_cpus=10**9))


# --- a node without a writable cgroup refuses a limit at create --------------------------------------


def _tiny_image(store: ImageStore) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("bin")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    store.import_rootfs([buf.getvalue()], "busybox:latest", ['CMD ["sh"]'], "")


def test_create_with_a_limit_on_a_node_without_cgroups_fails_with_one_line(
    tmp_path: Path, store: ImageStore, publisher: ListPublisher
) -> None:
    _tiny_image(store)
    manager = ContainerManager(
        tmp_path / "containers",
        store,
        snapshotter_for(SnapshotterChoice.COPY, tmp_path / "snapshots"),
        Monitor(tmp_path / "runc"),
        Slirp(),
        publisher,
        "test",
        cgroups=Cgroups(probe(tmp_path / "empty-cgroup-root")),
    )

    async def create(limits: Limits) -> None:
        await manager.create(ContainerConfig(image="busybox:latest", limits=limits))

    with pytest.raises(FailedPrecondition) as refused:
        asyncio.run(create(Limits(memory=64 << 20)))
    assert str(refused.value).startswith("--memory: cannot enforce resource limits on this host")
    assert "\n" not in str(refused.value)
    assert manager.list_containers(all=True) == []  # nothing was made
    asyncio.run(create(Limits()))  # without limits the same node creates containers
    assert len(manager.list_containers(all=True)) == 1


# --- the CLI's parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256m", 256 << 20),
        ("1g", 1 << 30),
        ("512MB", 512 << 20),
        ("1.5g", 3 << 29),
        ("1048576", 1 << 20),
        ("64k", 64 << 10),
    ],
)
def test_sizes(text: str, value: int) -> None:
    assert cli_limits.parse_size(text, "--memory") == value


def test_bad_flags_are_one_line() -> None:
    with pytest.raises(InvalidArgument, match="invalid size for --memory: 'lots'"):
        cli_limits.parse_size("lots", "--memory")
    with pytest.raises(InvalidArgument, match="invalid size"):
        cli_limits.parse_size("-1", "--memory")
    assert cli_limits.parse_size("-1", "--memory-swap", allow_unlimited=True) == -1
    assert cli_limits.parse_cpus("0.5") == 500_000_000
    with pytest.raises(InvalidArgument, match="--cpus"):
        cli_limits.parse_cpus("half")


def test_run_flags_become_resources() -> None:
    from dockyard.cli.__main__ import build_parser
    from dockyard.cli.spec import build_spec

    args = build_parser("run").parse_args(
        ["run", "-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "-c", "512", "img", "sh", "-c", "x"]
    )
    spec = build_spec(args)
    assert (spec.resources.memory, spec.resources.nano_cpus, spec.resources.pids_limit) == (
        64 << 20,
        5 * 10**8,
        20,
    )
    assert spec.resources.cpu_shares == 512 and not spec.resources.HasField("memory_swap")
    assert list(spec.command) == ["sh", "-c", "x"]
    plain = build_spec(build_parser("run").parse_args(["run", "img"]))
    assert not plain.HasField("resources")


# --- stats ---------------------------------------------------------------------------------------------


def test_proc_sample_reads_a_live_process() -> None:
    import os

    from dockyard.runtime.cgroups import proc_sample

    s = proc_sample([str(os.getpid())], os.getpid())
    assert s.pids == 1 and s.memory_usage > 0 and s.memory_limit > 0 and s.cpu_ns > 0


def test_stream_stats_turns_cpu_time_into_percent_of_a_core() -> None:
    import time
    from dataclasses import replace as dc_replace

    from dockyard.runtime.cgroups import Sample
    from dockyard.runtime.records import ContainerRecord, State
    from dockyard.runtime.stats import stream_stats

    class HalfACore:
        usable = True

        def sample(self, cid: str, pid: int) -> Sample:  # CPU time grows at half the wall clock's pace
            return Sample(cpu_ns=time.monotonic_ns() // 2, memory_usage=10, memory_limit=100, pids=2)

    running = dc_replace(
        ContainerRecord("c1", "one", ContainerConfig(image="i"), "sha256:x", "t"), state=State.RUNNING, pid=1
    )
    stopped = ContainerRecord("c2", "two", ContainerConfig(image="i"), "sha256:x", "t")

    class Manager:
        cgroups = HalfACore()

        def get(self, ref: str) -> ContainerRecord:
            return {"one": running, "two": stopped}[ref]

        def list_containers(self) -> list[ContainerRecord]:
            return [running]

    async def collect(refs: list[str], stream: bool) -> list[list]:
        out = []
        async for report in stream_stats(Manager(), refs, stream=stream, interval=0.05):  # type: ignore[arg-type]
            out.append(report)
            if len(out) == 3:
                break
        return out

    once = asyncio.run(collect([], stream=False))
    assert len(once) == 1 and [s.name for s in once[0]] == ["one"]
    assert 45 < once[0][0].cpu_percent < 55 and once[0][0].memory_percent == 10.0 and once[0][0].from_cgroup
    streamed = asyncio.run(collect(["one", "two"], stream=True))
    assert len(streamed) == 3
    two = streamed[0][1]
    assert two.state is State.CREATED and two.cpu_percent == 0 and two.sample.pids == 0


# --- the default pids limit (a fork bomb stays in its container) ------------------------------------


def test_a_container_that_sets_no_pids_limit_gets_the_default(tmp_path: Path) -> None:
    from dockyard.core.cgroups import DEFAULT_PIDS_LIMIT

    cg = Cgroups(probe(fake_v1(tmp_path)))
    assert DEFAULT_PIDS_LIMIT == 2048 and cg.default_pids_limit == 2048
    assert cg.resources(Limits()) == {"pids": {"limit": 2048}}
    assert cg.resources(Limits(memory=64 << 20))["pids"] == {"limit": 2048}
    assert cg.resources(Limits(pids_limit=100))["pids"] == {"limit": 100}  # the user's own
    assert cg.resources(Limits(pids_limit=-1))["pids"] == {"limit": -1}  # docker's unlimited
    # update lifting other limits keeps the default, it does not open the pids limit up
    assert cg.resources(Limits(), lifting=True)["pids"] == {"limit": 2048}


def test_no_pids_controller_means_no_default_and_no_refusal(tmp_path: Path) -> None:
    without = Cgroups(probe(fake_v2(tmp_path, enabled="cpu io memory"), own_v2="/dockyard/platform"))
    assert without.usable and without.default_pids_limit == 0
    assert "pids" not in without.resources(Limits())
    none = Cgroups(Delegation("none", False, problems=("x",)))
    assert none.default_pids_limit == 0
    none.check(Limits())  # the default is no flag of the user's: never a reason to refuse


def test_pids_limit_0_from_a_client_is_unlimited_not_the_default() -> None:
    from dockyard.api.containers.v1 import containers_pb2 as cpb
    from dockyard.runtime.servicer import limit_changes

    assert limit_changes(cpb.Resources(pids_limit=0)) == {"pids_limit": -1}
    assert limit_changes(cpb.Resources(pids_limit=5)) == {"pids_limit": 5}
    assert limit_changes(cpb.Resources()) == {}
