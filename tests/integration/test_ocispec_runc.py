"""A config.json from dockyard.runtime.ocispec runs under the real runc, and does what it says.

Twice: as real root (CI runs as root; no user namespace in the spec, so this validates the spec
itself), and as the unprivileged ``dockyard`` user inside the node namespace
(:func:`dockyard.runtime.userns.reexec_inside`), which is how the runtime runs containers.
The rootfs is busybox from Debian's busybox-static.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.runtime import runflags
from dockyard.runtime.etcfiles import etc_files
from dockyard.runtime.ocispec import RunConfig, build_spec, merge_process
from dockyard.runtime.passwd import resolve_user
from dockyard.runtime.seccomp import load_seccomp

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
USER = os.environ.get("DOCKYARD_USER", "dockyard")
APPLETS = ("sh", "echo", "id", "cat", "touch", "grep", "hostname", "ls", "wc", "mount")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runs runc as real root"),
    pytest.mark.skipif(BUSYBOX is None or not os.path.exists(RUNC), reason="needs runc and busybox-static"),
]

#: docker's default capability set as /proc/<pid>/status shows it.
DOCKER_CAP_MASK = "00000000a80425fb"

PROBE = textwrap.dedent(
    r"""
    echo "id=$(id)"
    sed -nE 's/^(Cap[A-Za-z]+|Seccomp):[[:space:]]*/\1=/p' /proc/self/status
    echo "hostname_file=$(cat /etc/hostname)"
    echo "hostname=$(hostname)"
    echo "resolv=$(cat /etc/resolv.conf)"
    touch /probe 2>/dev/null && echo rootfs=writable || echo rootfs=read-only
    echo hello > /scratch/f && echo "tmpfs=$(cat /scratch/f)"
    echo "masked_file=[$(cat /proc/timer_list)]"
    echo "masked_dir=[$(ls /sys/firmware)]"
    echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq=writable || echo sysrq=read-only
    echo "bind=$(cat /data/hello)"
    touch /data/new 2>/dev/null && echo bind_ro=writable || echo bind_ro=read-only
    echo x > /dev/null && echo "devnull=ok"
    echo "zero=$(head -c 3 /dev/zero | wc -c)"
    echo "sys=$(cat /sys/kernel/uevent_seqnum 2>&1)"
    echo "cgroup=$(ls /sys/fs/cgroup >/dev/null 2>&1 && echo ok || echo missing)"
    echo "env_hostname=$HOSTNAME"
    echo "nofile=$(ulimit -n)"
    """
)


def make_rootfs(root: Path) -> Path:
    """A busybox rootfs with a user ``app`` (1000) in groups app and extra (2000)."""
    assert BUSYBOX is not None
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in (*APPLETS, "sed", "head", "sleep"):
        (root / "bin" / applet).symlink_to("busybox")
    for d in ("etc", "proc", "sys", "dev", "scratch", "data", "tmp"):
        (root / d).mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    return root


def write_bundle(
    bundle: Path, rootfs: Path, run: RunConfig, image: dict[str, Any], hostname: str = "probe1"
) -> dict[str, Any]:
    """The whole flow the runtime follows: merge, resolve the user, etc files, seccomp, spec."""
    process = merge_process(image, run)
    uid, gid, gids = resolve_user(rootfs, process.user)
    files = etc_files(bundle / "etc", hostname, run.network)
    spec = build_spec(
        process,
        rootfs,
        run,
        uid=uid,
        gid=gid,
        gids=gids,
        hostname=hostname,
        netns_path=None,
        hosts_file=files.hosts,
        resolv_file=files.resolv,
        hostname_file=files.hostname,
        seccomp=load_seccomp(),
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    return spec


def parse(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def runc_run(state: Path, bundle: Path, cid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNC, "--root", str(state), "run", "--bundle", str(bundle), cid],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _probe_run(data: Path, **kw: Any) -> RunConfig:
    return RunConfig(
        command=["sh", "-c", PROBE],
        read_only=True,
        tmpfs=["/scratch"],
        binds=[runflags.bind_mount(str(data), "/data", read_only=True)],
        **kw,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    make_rootfs(tmp_path / "rootfs")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hello").write_text("from the host\n")
    (tmp_path / "bundle").mkdir()
    return tmp_path


def _assert_probe(out: dict[str, str], hostname: str, nofile: int) -> None:
    assert out["id"] == "uid=0(root) gid=0(root)"  # busybox shows groups only when there are extra ones
    assert out["CapEff"] == out["CapPrm"] == out["CapBnd"] == DOCKER_CAP_MASK
    assert out["CapInh"] == out["CapAmb"] == "0000000000000000"
    assert out["hostname_file"] == out["hostname"] == out["env_hostname"] == hostname
    assert out["rootfs"] == "read-only"
    assert out["tmpfs"] == "hello"
    assert out["masked_file"] == "[]" and out["masked_dir"] == "[]"
    assert out["sysrq"] == "read-only"
    assert out["bind"] == "from the host" and out["bind_ro"] == "read-only"
    assert out["devnull"] == "ok" and out["zero"] == "3"
    assert out["sys"].isdigit(), out["sys"]  # sysfs is there
    assert out["cgroup"] == "ok"
    assert int(out["nofile"]) == nofile
    assert out["Seccomp"] == "2"  # a filter is loaded


def test_the_spec_runs_under_real_runc_as_root(work: Path) -> None:
    spec = write_bundle(work / "bundle", work / "rootfs", _probe_run(work / "data", network="none"), {})
    assert spec["linux"]["seccomp"]["syscalls"]
    done = runc_run(work / "state", work / "bundle", f"ocispec-root-{os.getpid()}")
    assert done.returncode == 0, done.stderr
    _assert_probe(parse(done.stdout), "probe1", spec["process"]["rlimits"][0]["hard"])
    assert parse(done.stdout)["resolv"] == ""  # --network none


def test_the_user_and_groups_asked_for_are_the_ones_that_run(work: Path) -> None:
    run = RunConfig(command=["id"], user="app")
    write_bundle(work / "bundle", work / "rootfs", run, {"User": "root"})
    done = runc_run(work / "state", work / "bundle", f"ocispec-user-{os.getpid()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "uid=1000(app) gid=1000(app) groups=2000(extra)"


# --- rootless: as the dockyard user, inside the node namespace -------------------------------------

SNIPPET = textwrap.dedent(
    """\
    import json, os, subprocess, sys
    from pathlib import Path

    from dockyard.runtime import userns

    state, work = Path(sys.argv[1]), Path(sys.argv[2])
    if not userns.in_node_namespace():
        userns.reexec_inside(state, [sys.executable, *sys.argv])

    sys.path.insert(0, str(work))
    import ocispec_runc_case as case  # this test module, copied next to the bundle

    results = {}
    for network in ("none", "host"):
        bundle = work / f"bundle-{network}"
        bundle.mkdir()
        run = case._probe_run(work / "data", network=network)
        spec = case.write_bundle(bundle, work / "rootfs", run, {})
        done = case.runc_run(state / "runc", bundle, f"ocispec-rootless-{network}-{os.getpid()}")
        nofile = spec["process"]["rlimits"][0]["hard"]
        results[network] = {"rc": done.returncode, "out": done.stdout, "err": done.stderr, "nofile": nofile}
    results["uid_map"] = Path("/proc/self/uid_map").read_text()
    print(json.dumps(results))
    """
)


@pytest.fixture
def rootless_work() -> Iterator[Path]:
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"user {USER!r} does not exist: run `make setup` (deploy/setup/host.sh) as root")
    work = Path(tempfile.mkdtemp(prefix="dockyard-ocispec-"))
    try:
        make_rootfs(work / "rootfs")
        (work / "data").mkdir()
        (work / "data" / "hello").write_text("from the host\n")
        (work / "state").mkdir()
        (work / "snippet.py").write_text(SNIPPET)
        shutil.copy(__file__, work / "ocispec_runc_case.py")
        for path in (work, *work.rglob("*")):
            os.lchown(path, pw.pw_uid, pw.pw_gid)
        yield work
    finally:
        pause = work / "state" / "pause.pid"
        if pause.exists():
            pid = int(pause.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.rootless
def test_the_spec_runs_rootless_in_the_node_namespace(rootless_work: Path) -> None:
    work = rootless_work
    done = subprocess.run(
        [
            "runuser",
            "-u",
            USER,
            "--",
            sys.executable,
            str(work / "snippet.py"),
            str(work / "state"),
            str(work),
        ],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert results["uid_map"].split()[:3] == ["0", str(pwd.getpwnam(USER).pw_uid), "1"]
    for network in ("none", "host"):
        r = results[network]
        assert r["rc"] == 0, f"--network {network}: {r['err']}"
        out = parse(r["out"])
        _assert_probe(out, "probe1", r["nofile"])
    assert parse(results["host"]["out"])["resolv"] == Path("/etc/resolv.conf").read_text().strip()
