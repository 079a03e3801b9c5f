"""Dockyard's runtime vs rootless podman 4.3 (and bare runc as the floor), side by side in one run.

    .venv/bin/python bench/runtime_bench.py            # make bench-runtime (as root: peers run as `dockyard`)
    .venv/bin/python bench/runtime_bench.py --quick    # a smoke check: N=6, 10 at once, small sizes
    .venv/bin/python bench/runtime_bench.py --runs 40 --concurrent 50 --reps 5

What it does, in one run, everything as the unprivileged user (``--user``, default ``dockyard``;
``setpriv`` when started as root, as make does):

1. Builds a busybox rootfs tar from Debian's ``/bin/busybox`` (a symlink per applet of
   ``busybox --list-full``, /etc/passwd, /etc/group, /tmp), cached in ``.cache/bench/``.
2. Starts the platform (``dockyard up`` with its own state dir, NATS and registry ports, gateway socket
   in the scratch dir) and imports the tar (``dockyard import``). Podman gets its own throw-away store:
   ``XDG_CONFIG_HOME``/``XDG_DATA_HOME``/``XDG_RUNTIME_DIR`` in the scratch dir, storage.conf with
   driver ``overlay`` and *no* mount_program (kernel overlay, as Dockyard uses; the script checks what
   podman really chose and prints it), containers.conf with runtime ``runc``, cgroupfs, file events;
   the same tar goes in with ``podman import``. The floor is ``runc run`` of a ``runc spec --rootless``
   bundle (plain directory rootfs extracted from the same tar, host network, no monitor, no overlay).
3. Measures (order alternates between the contenders every repetition to cancel drift):
   - ``run --rm busybox true`` through each CLI, default network (slirp4netns for both) and
     ``--network none``; N runs after 2 warm-ups; median and p90.
   - the same through the gRPC API from a warm in-process channel to the gateway socket:
     Create + Attach(start, wait) until the exit code arrives + Remove, vs ``runc run`` (the floor).
   - ``--concurrent`` containers started at once (``run -d busybox sleep 600`` as that many CLI
     processes), wall time until every CLI returned, then checked running; also via the API (threads).
   - with them running: RSS and PSS (``/proc/PID/smaps_rollup``) of what each platform keeps beside
     the containers: ours = the runtime service process and its descendants (slirp4netns per container,
     the node namespace's pause process) + every conmon; podman's = its pause process + conmon +
     slirp4netns (podman has no daemon). The containers' own processes (conmon's children) are not
     counted. The gateway, registry, NATS and builder are reported apart (``platform_other``).
   - ``pull`` of a ``--layers`` x ``--size-mb`` MiB image (uncompressed random layers, the layout of
     bench/registry_bench.py) from one CNCF distribution (``docker-registry``) that skopeo pushed it
     to, into a store without it (the image is removed, untimed, after every pull).
   - ``commit`` of a stopped container that wrote ``--commit-mb`` MB (``dd if=/dev/urandom of=/big``).
4. Prints a table (ours, peer, ratio = ours/peer, the goal, met?) and writes JSON to
   ``.cache/bench/runtime.json`` (plus a time-stamped copy). Reports; never fails on a missed goal.

Everything it started is removed at the end, also on failure or Ctrl-C: containers of both, the
platform, podman's pause process and store, the registry, the scratch dir.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import io
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR, REPO_ROOT, fmt_table, free_port, median, save_results, terminate, wait_http
from registry_bench import build_image

from dockyard.runtime.userns import end_node

MB = 1_000_000
MIB = 1 << 20
VENV_BIN = REPO_ROOT / ".venv" / "bin"
BUSYBOX = "/bin/busybox"
IMAGE = "busybox"
OURS, PEER = "dockyard", "podman"


# --------------------------------------------------------------------------- small helpers


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return float(statistics.quantiles(values, n=10, method="inclusive")[8])


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace("\0", " ")


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in all_pids():
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(pid)
    return kids


def descendants(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def comm(pid: int) -> str:
    return _read(f"/proc/{pid}/comm").strip()


@dataclass
class Mem:
    """Summed memory of a set of processes, in kB, with a count per command name."""

    rss_kb: int = 0
    pss_kb: int = 0
    pss_readable: bool = True
    procs: dict[str, int] = field(default_factory=dict)

    def add(self, pid: int) -> None:
        status = _read(f"/proc/{pid}/status")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.rss_kb += int(line.split()[1])
        rollup = _read(f"/proc/{pid}/smaps_rollup")
        pss = [ln for ln in rollup.splitlines() if ln.startswith("Pss:")]
        if pss:
            self.pss_kb += int(pss[0].split()[1])
        elif status:
            self.pss_readable = False
        name = comm(pid) or "?"
        self.procs[name] = self.procs.get(name, 0) + 1

    @classmethod
    def of(cls, pids: Sequence[int]) -> Mem:
        m = cls()
        for pid in sorted(set(pids)):
            m.add(pid)
        return m

    def as_dict(self) -> dict[str, Any]:
        return {
            "rss_mb": round(self.rss_kb * 1024 / MB, 1),
            "pss_mb": round(self.pss_kb * 1024 / MB, 1) if self.pss_readable else None,
            "processes": self.procs,
        }


# --------------------------------------------------------------------------- running as the user


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def prefix(self) -> list[str]:
        """setpriv to the user when we are root; nothing when we already are someone else."""
        if os.geteuid() != 0:
            return []
        return ["setpriv", "--reuid", self.name, "--regid", self.name, "--init-groups", "--"]

    def own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, self.uid, self.gid)


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> float:
    """Run ``cmd`` to completion; seconds elapsed. Raises with its stderr if it fails."""
    started = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout)
    elapsed = time.perf_counter() - started
    if res.returncode != 0:
        out = (res.stderr or res.stdout).decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {out}")
    return elapsed


def output(cmd: list[str], env: dict[str, str] | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, env=env, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


# --------------------------------------------------------------------------- the busybox image


def busybox_tar() -> Path:
    """A busybox rootfs tar (root-owned entries, mtime 0), built once from Debian's busybox-static."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out = CACHE_DIR / "busybox-rootfs.tar"
    if out.exists() and out.stat().st_mtime >= Path(BUSYBOX).stat().st_mtime:
        return out
    applets = output([BUSYBOX, "--list-full"]).split()

    def entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, link, 0
        return info

    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755)):
            tar.addfile(entry(d, tarfile.DIRTYPE, mode))
        for d, mode in (("usr/sbin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
            tar.addfile(entry(d, tarfile.DIRTYPE, mode))
        data = Path(BUSYBOX).read_bytes()
        tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for name in applets:
            if name != "bin/busybox":
                tar.addfile(entry(name, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
        files = {
            "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
        }
        for name, body in files.items():
            tar.addfile(entry(name, tarfile.REGTYPE, 0o644, len(body)), io.BytesIO(body))
    tmp.rename(out)
    return out


# --------------------------------------------------------------------------- Dockyard


class Dockyard:
    """``dockyard up`` as the user, its CLI, a warm gRPC channel, and how to find its processes."""

    def __init__(self, user: User, scratch: Path) -> None:
        self.user = user
        self.state = scratch / "state"
        self.state.mkdir()
        user.own(self.state)
        self.sock = self.state / "dockyard.sock"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKYARD_", "XDG_"))}
        self.env["HOME"] = str(scratch)
        self.log = scratch / "dockyard-up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Any = None
        self.stub: Any = None
        self.pb: Any = None
        self.phases: dict[str, list[float]] = {}  # the API run's RPCs, seconds each

    def start(self) -> None:
        cmd = [*self.user.prefix(), str(VENV_BIN / "dockyard"), "up", "--state-dir", str(self.state)]
        cmd += ["--nats-port", str(free_port()), "--registry-listen", f"127.0.0.1:{free_port()}"]
        cmd += ["--listen", f"unix://{self.sock}"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 120
        while b"platform ready" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockyard up did not become ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        import grpc

        from dockyard.api.containers.v1 import containers_pb2, containers_pb2_grpc

        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.stub = containers_pb2_grpc.ContainersStub(self.channel)
        self.pb = containers_pb2

    def cli(self, *args: str) -> list[str]:
        return [*self.user.prefix(), str(VENV_BIN / "dockyard"), "-H", f"unix://{self.sock}", *args]

    def do(self, *args: str, timeout: float = 300) -> float:
        return run(self.cli(*args), self.env, timeout)

    def ids(self, all_: bool = True) -> list[str]:
        reply = self.stub.List(self.pb.ListContainersRequest(all=all_), timeout=60)
        return [c.id for c in reply.containers]

    def api_run(self, network: str) -> float:
        """Create + Attach(start, wait) until the exit code + Remove: ``run --rm`` done by a client."""
        pb = self.pb
        started = time.perf_counter()
        spec = pb.ContainerSpec(image=IMAGE, command=["true"], network=network)
        c = self.stub.Create(pb.CreateContainerRequest(spec=spec), timeout=60)
        created = time.perf_counter()
        first = pb.AttachInput(start=pb.AttachStart(container_id=c.id, start=True, wait=True))
        code = None
        for out in self.stub.Attach(iter([first]), timeout=60):
            if out.WhichOneof("output") == "exit_code":
                code = out.exit_code
        exited = time.perf_counter()
        self.stub.Remove(pb.RemoveContainerRequest(id=c.id), timeout=60)
        elapsed = time.perf_counter() - started
        for phase, t in (("create", created - started), ("attach", exited - created)):
            self.phases.setdefault(phase, []).append(t)
        self.phases.setdefault("remove", []).append(started + elapsed - exited)
        if code != 0:
            raise RuntimeError(f"API run of `true` ended with exit code {code}")
        return elapsed

    def api_start_detached(self, name: str) -> None:
        pb = self.pb
        spec = pb.ContainerSpec(image=IMAGE, name=name, command=["sleep", "600"])
        c = self.stub.Create(pb.CreateContainerRequest(spec=spec), timeout=300)
        self.stub.Start(pb.StartContainerRequest(id=c.id), timeout=300)

    def runtime_pid(self) -> int:
        assert self.proc is not None
        kids = children_map()
        for pid in descendants(self.proc.pid, kids):
            if "-m dockyard.runtime" in cmdline(pid):
                return pid
        raise RuntimeError("the runtime service process was not found under dockyard up")

    def overhead(self) -> tuple[Mem, Mem, Mem]:
        """(runtime + its descendants + every conmon, the runtime process alone, the rest of the
        platform), none of them counting the containers' own processes."""
        kids = children_map()
        rt = self.runtime_pid()
        conmons = [p for p in all_pids() if comm(p) == "conmon" and str(self.state) in cmdline(p)]
        containers = {c for p in conmons for c in descendants(p, kids)}
        beside = [p for p in [rt, *descendants(rt, kids), *conmons] if p not in containers]
        assert self.proc is not None
        rest = [p for p in [self.proc.pid, *descendants(self.proc.pid, kids)] if p not in {rt, *beside}]
        rest = [p for p in rest if p not in containers]
        return Mem.of(beside), Mem.of([rt]), Mem.of(rest)

    def clear(self) -> None:
        """Remove every container (after a failed part)."""
        with contextlib.suppress(Exception):
            ids = self.ids()
            if ids:
                run(self.cli("rm", "-f", *ids), self.env)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None and self.stub is not None:
            with contextlib.suppress(Exception):
                ids = self.ids()
                if ids:
                    run(self.cli("rm", "-f", *ids), self.env)
        if self.channel is not None:
            self.channel.close()
        terminate(self.proc, timeout=60)
        end_node(self.state / "runtime")  # the node namespace outlives the platform by design


# --------------------------------------------------------------------------- podman


class Podman:
    """Rootless podman as the user with a throw-away store and config under the scratch dir."""

    def __init__(self, user: User, scratch: Path) -> None:
        self.user = user
        self.home = scratch / "podman"
        self.root, self.runroot = self.home / "root", self.home / "runroot"
        self.runtime_dir = self.home / "run"
        conf = self.home / "config" / "containers"
        for d in (conf, self.home / "data", self.root, self.runroot, self.runtime_dir):
            d.mkdir(parents=True)
        self.runtime_dir.chmod(0o700)
        (conf / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n'
        )
        (conf / "containers.conf").write_text(
            '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        )
        for d in [self.home, *self.home.rglob("*")]:
            user.own(d)
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "LANG": "C.UTF-8",
        }
        self.used = False

    def cli(self, *args: str) -> list[str]:
        return [*self.user.prefix(), "podman", *args]

    def do(self, *args: str, timeout: float = 300) -> float:
        self.used = True
        return run(self.cli(*args), self.env, timeout)

    def out(self, *args: str) -> str:
        self.used = True
        return output(self.cli(*args), self.env)

    def pause_pid(self) -> int | None:
        text = _read(str(self.runtime_dir / "libpod" / "tmp" / "pause.pid")).strip()
        return int(text) if text.isdigit() else None

    def overhead(self) -> Mem:
        kids = children_map()
        mine = [
            p for p in all_pids() if comm(p) in ("conmon", "slirp4netns") and str(self.home) in cmdline(p)
        ]
        conmons = [p for p in mine if comm(p) == "conmon"]
        containers = {c for p in conmons for c in descendants(p, kids)}
        pause = self.pause_pid()
        return Mem.of([p for p in [*mine, *([pause] if pause else [])] if p not in containers])

    def clear(self) -> None:
        with contextlib.suppress(Exception):
            run(self.cli("rm", "-af", "-t", "0"), self.env)

    def stop(self) -> None:
        if not self.used:
            shutil.rmtree(self.home, ignore_errors=True)
            return
        with contextlib.suppress(Exception):
            run(self.cli("rm", "-af", "-t", "0"), self.env)
        self._kill_pause()  # its namespace, and the overlay mounts in it, go with it
        if os.geteuid() != 0:  # files owned by subordinate ids: remove them in a (new) userns
            with contextlib.suppress(Exception):
                run(self.cli("unshare", "rm", "-rf", str(self.root), str(self.runroot)), self.env)
            self._kill_pause()
        shutil.rmtree(self.home, ignore_errors=True)

    def _kill_pause(self) -> None:
        pause = self.pause_pid()
        if pause is not None and comm(pause).startswith(("podman", "catatonit")):
            with contextlib.suppress(OSError):  # podman's pause process, holding its user namespace
                os.kill(pause, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while os.path.exists(f"/proc/{pause}") and comm(pause) and time.monotonic() < deadline:
                time.sleep(0.05)


# --------------------------------------------------------------------------- runc (the floor)


class RuncFloor:
    """``runc run`` of a rootless bundle (``runc spec --rootless``) whose rootfs is the busybox tar."""

    def __init__(self, user: User, scratch: Path, tar: Path) -> None:
        self.user = user
        self.dir = scratch / "runc"
        self.bundle, self.root = self.dir / "bundle", self.dir / "state"
        for d in (self.dir, self.bundle, self.bundle / "rootfs", self.root):
            d.mkdir()
            user.own(d)
        pre = user.prefix()
        run([*pre, "tar", "-xf", str(tar), "-C", str(self.bundle / "rootfs")])
        run([*pre, "runc", "spec", "--rootless", "--bundle", str(self.bundle)])
        config_path = self.bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["args"] = ["true"]
        config["process"]["terminal"] = False
        config_path.write_text(json.dumps(config))
        self.count = 0

    def run(self) -> float:
        self.count += 1
        cmd = [*self.user.prefix(), "runc", "--root", str(self.root), "run", "--bundle", str(self.bundle)]
        return run([*cmd, f"floor-{self.count}"], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


# --------------------------------------------------------------------------- the registry for pulls


@contextlib.contextmanager
def distribution(scratch: Path) -> Iterator[str]:
    base = scratch / "distribution"
    (base / "storage").mkdir(parents=True)
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n"
        f"  filesystem:\n    rootdirectory: {base / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with (base / "server.log").open("wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc)
        yield f"127.0.0.1:{port}"
    finally:
        terminate(proc)


# --------------------------------------------------------------------------- the measurements


Timings = dict[str, list[float]]


def interleave(rep: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[float, float]:
    """Run ``a`` and ``b`` once each, ``a`` first on even reps, ``b`` first on odd ones."""
    if rep % 2 == 0:
        ta = a()
        return ta, b()
    tb = b()
    return a(), tb


def bench_run_rm(dy: Dockyard, pm: Podman, runs: int, res: dict[str, Any]) -> None:
    for net_label, dy_net, pm_net in (
        ("default", [], []),
        ("none", ["--network", "none"], ["--network", "none"]),
    ):
        dy_args = ["run", "--rm", *dy_net, IMAGE, "true"]
        pm_args = ["run", "--rm", *pm_net, IMAGE, "true"]
        leftover = 0

        def ours(dy_args: list[str] = dy_args) -> float:
            nonlocal leftover
            t = dy.do(*dy_args)
            # untimed: `run --rm` returns with the exit code; has the removal finished too?
            if dy.ids():
                leftover += 1
                deadline = time.monotonic() + 10
                while dy.ids() and time.monotonic() < deadline:
                    time.sleep(0.01)
            return t

        for _ in range(2):  # warm-up, not counted
            ours()
            pm.do(*pm_args)
        leftover = 0
        t_dy: list[float] = []
        t_pm: list[float] = []
        for rep in range(runs):
            a, b = interleave(rep, ours, functools.partial(pm.do, *pm_args))
            t_dy.append(a)
            t_pm.append(b)
        res[f"cli_run_rm_{net_label}"] = {OURS: t_dy, PEER: t_pm, "ours_not_yet_removed_on_return": leftover}
        print(
            f"  CLI run --rm ({net_label:7s}) dockyard median {median(t_dy) * 1000:4.0f} ms "
            f"p90 {p90(t_dy) * 1000:4.0f} | podman median {median(t_pm) * 1000:4.0f} ms "
            f"p90 {p90(t_pm) * 1000:4.0f}  (dockyard container still listed on return: {leftover}/{runs})",
            flush=True,
        )


def bench_api(dy: Dockyard, floor: RuncFloor, runs: int, res: dict[str, Any]) -> None:
    for _ in range(2):
        dy.api_run("none")
        dy.api_run("")
        floor.run()
    dy.phases.clear()
    t_none: list[float] = []
    t_slirp: list[float] = []
    t_floor: list[float] = []
    for rep in range(runs):
        a, b = interleave(rep, lambda: dy.api_run("none"), floor.run)
        t_none.append(a)
        t_floor.append(b)
        t_slirp.append(dy.api_run(""))
    res["api_run_rm"] = {"dockyard_none": t_none, "dockyard_default": t_slirp, "runc": t_floor}
    res["api_run_rm"]["dockyard_rpc_s"] = dy.phases  # both networks
    phases = "  ".join(f"{k} {median(v) * 1000:.0f} ms" for k, v in dy.phases.items())
    print(
        f"  API run --rm: network none median {median(t_none) * 1000:4.0f} ms p90 {p90(t_none) * 1000:4.0f}"
        f" | slirp4netns median {median(t_slirp) * 1000:4.0f} ms | runc floor median "
        f"{median(t_floor) * 1000:4.0f} ms p90 {p90(t_floor) * 1000:4.0f}\n"
        f"    API medians per RPC (both networks): {phases}",
        flush=True,
    )


def _all_at_once(cmds: list[list[str]], env: dict[str, str]) -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for c in cmds]
    results = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    bad = [
        (p.returncode, err.decode(errors="replace")[-300:])
        for p, (_, err) in zip(procs, results, strict=True)
    ]
    bad = [b for b in bad if b[0] != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(cmds)} failed, e.g. {bad[0]}")
    return wall


def bench_concurrent(dy: Dockyard, pm: Podman, n: int, rounds: int, res: dict[str, Any]) -> None:
    walls: Timings = {OURS: [], PEER: [], "dockyard_api": []}
    removal: Timings = {OURS: [], PEER: []}
    mem: dict[str, Any] = {}

    def ours(rnd: int) -> None:
        names = [f"dyb{rnd}-{i}" for i in range(n)]
        wall = _all_at_once(
            [dy.cli("run", "-d", "--name", nm, IMAGE, "sleep", "600") for nm in names], dy.env
        )
        running = len(dy.ids(all_=False))
        if running != n:
            raise RuntimeError(f"dockyard: {running} of {n} containers running after run -d")
        walls[OURS].append(wall)
        time.sleep(1.0)
        beside, alone, rest = dy.overhead()
        mem.setdefault(OURS, []).append(
            {
                "runtime_and_monitors": beside.as_dict(),
                "runtime_alone": alone.as_dict(),
                "platform_other": rest.as_dict(),
            }
        )
        ids = dy.ids()
        removal[OURS].append(run(dy.cli("rm", "-f", *ids), dy.env))
        print(
            f"  {n} at once: dockyard {wall:5.2f} s; beside the containers RSS {beside.rss_kb / 1000:.0f} MB "
            f"PSS {beside.pss_kb / 1000:.0f} MB (runtime alone RSS {alone.rss_kb / 1000:.0f} MB) "
            f"{beside.procs}",
            flush=True,
        )

    def peer(rnd: int) -> None:
        names = [f"pmb{rnd}-{i}" for i in range(n)]
        wall = _all_at_once(
            [pm.cli("run", "-d", "--name", nm, IMAGE, "sleep", "600") for nm in names], pm.env
        )
        running = len(pm.out("ps", "-q").split())
        if running != n:
            raise RuntimeError(f"podman: {running} of {n} containers running after run -d")
        walls[PEER].append(wall)
        time.sleep(1.0)
        m = pm.overhead()
        mem.setdefault(PEER, []).append({"monitors": m.as_dict()})
        removal[PEER].append(pm.do("rm", "-f", "-t", "0", *names))
        print(
            f"  {n} at once: podman   {wall:5.2f} s; beside the containers RSS {m.rss_kb / 1000:.0f} MB "
            f"PSS {m.pss_kb / 1000:.0f} MB {m.procs}",
            flush=True,
        )

    for rnd in range(rounds):
        if rnd % 2 == 0:
            ours(rnd)
            peer(rnd)
        else:
            peer(rnd)
            ours(rnd)
    # the API, n threads on one warm channel: the CLI's start-up cost taken out
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(dy.api_start_detached, [f"dya-{i}" for i in range(n)]))
    walls["dockyard_api"].append(time.perf_counter() - started)
    running = len(dy.ids(all_=False))
    run(dy.cli("rm", "-f", *dy.ids()), dy.env)
    print(f"  {n} at once via the API (threads): dockyard {walls['dockyard_api'][0]:5.2f} s ({running} ran)")
    res["concurrent"] = {"n": n, "wall_s": walls, "remove_all_s": removal, "memory": mem}


def bench_pull(
    dy: Dockyard, pm: Podman, scratch: Path, args: argparse.Namespace, res: dict[str, Any]
) -> None:
    image = build_image(args.layers, args.size_mb)
    times: Timings = {OURS: [], PEER: []}
    with distribution(scratch) as reg:
        cmd = [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]
        run([*cmd, f"oci:{image.layout}:bench", f"docker://{reg}/bench/big:1"])
        ref = f"{reg}/bench/big:1"

        def ours() -> float:
            t = dy.do("pull", ref)
            dy.do("rmi", ref)
            return t

        def peer() -> float:
            t = pm.do("pull", "--tls-verify=false", ref)
            pm.do("rmi", ref)
            return t

        for rep in range(args.reps):
            a, b = interleave(rep, ours, peer)
            times[OURS].append(a)
            times[PEER].append(b)
            print(f"  pull rep {rep + 1}/{args.reps}: dockyard {a:5.2f} s  podman {b:5.2f} s", flush=True)
    res["pull"] = {"image_mib": image.layer_bytes / MIB, "layers": args.layers, **times}


def bench_commit(dy: Dockyard, pm: Podman, reps: int, size_mb: int, res: dict[str, Any]) -> None:
    times: Timings = {OURS: [], PEER: []}
    dd = ["dd", "if=/dev/urandom", "of=/big", "bs=1M", f"count={size_mb}"]

    def one(tool: Dockyard | Podman, rep: int) -> float:
        name = f"commit{rep}"
        tool.do("run", "--name", name, IMAGE, *dd)
        t = tool.do("commit", name, f"bench/commit:{rep}")
        tool.do("rm", "-f", name)
        tool.do("rmi", f"bench/commit:{rep}")
        return t

    for rep in range(reps):
        a, b = interleave(rep, functools.partial(one, dy, rep), functools.partial(one, pm, rep))
        times[OURS].append(a)
        times[PEER].append(b)
        print(f"  commit rep {rep + 1}/{reps}: dockyard {a:5.2f} s  podman {b:5.2f} s", flush=True)
    res["commit"] = {"mb": size_mb, **times}


# --------------------------------------------------------------------------- report


def report(res: dict[str, Any], args: argparse.Namespace) -> list[list[str]]:
    rows: list[list[str]] = []

    def ms(v: float) -> str:
        return f"{v * 1000:.0f} ms"

    def sec(v: float) -> str:
        return f"{v:.2f} s"

    def add(label: str, ours: str, peer: str, ratio: float | None, goal: str, met: bool | None) -> None:
        r = "-" if ratio is None else f"{ratio:.2f}"
        rows.append([label, ours, peer, r, goal, "-" if met is None else ("yes" if met else "NO")])

    for net in ("default", "none"):
        key = f"cli_run_rm_{net}"
        if key in res:
            a, b = res[key][OURS], res[key][PEER]
            ratio = median(a) / median(b)
            label = f"CLI run --rm true, net {'slirp4netns' if net == 'default' else 'none'} (N={len(a)})"
            add(
                label,
                f"{ms(median(a))} p90 {ms(p90(a))}",
                f"{ms(median(b))} p90 {ms(p90(b))}",
                ratio,
                "<= 0.8x",
                ratio <= 0.8,
            )
    if "api_run_rm" in res:
        r = res["api_run_rm"]
        fl = r["runc"]
        for key, label in (("dockyard_none", "none"), ("dockyard_default", "slirp4netns")):
            a = r[key]
            ratio = median(a) / median(fl)
            add(
                f"API run --rm true, net {label} vs runc (N={len(a)})",
                f"{ms(median(a))} p90 {ms(p90(a))}",
                f"{ms(median(fl))} p90 {ms(p90(fl))}",
                ratio,
                "<= 2x runc",
                ratio <= 2.0,
            )
    if "concurrent" in res:
        c = res["concurrent"]
        w = c["wall_s"]
        a, b = median(w[OURS]), median(w[PEER])
        add(f"{c['n']} x run -d at once, CLI (rounds={len(w[OURS])})", sec(a), sec(b), a / b, "-", None)
        add(f"{c['n']} x Create+Start at once, API", sec(median(w["dockyard_api"])), "-", None, "-", None)
        for metric in ("rss_mb", "pss_mb"):
            ours_v = max(m["runtime_and_monitors"][metric] or 0 for m in c["memory"][OURS])
            peer_v = max(m["monitors"][metric] or 0 for m in c["memory"][PEER])
            alone = max(m["runtime_alone"][metric] or 0 for m in c["memory"][OURS])
            name = metric.split("_")[0].upper()
            add(
                f"{name} beside {c['n']} containers (runtime+monitors)",
                f"{ours_v:.0f} MB",
                f"{peer_v:.0f} MB",
                ours_v / peer_v if peer_v else None,
                "< 150 MB",
                ours_v < 150,
            )
            add(f"{name} of the runtime process alone", f"{alone:.0f} MB", "(no daemon)", None, "-", None)
    for key, label in (
        ("pull", f"pull {args.layers}x{args.size_mb} MiB"),
        ("commit", f"commit {args.commit_mb} MB"),
    ):
        if key in res:
            a, b = res[key][OURS], res[key][PEER]
            ratio = median(a) / median(b)
            add(f"{label} (N={len(a)})", sec(median(a)), sec(median(b)), ratio, "<= 1.0x", ratio <= 1.0)
    return rows


def versions(pm: Podman) -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
            )
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    info = "?"
    with contextlib.suppress(Exception):
        info = pm.out(
            "info",
            "--format",
            "driver={{.Store.GraphDriverName}} options={{.Store.GraphOptions}} "
            "status={{json .Store.GraphStatus}} runtime={{.Host.OCIRuntime.Name}} "
            "cgroups={{.Host.CgroupManager}} slirp={{.Host.Slirp4NetNS.Executable}}",
        ).strip()
    git = ["git", "-C", str(REPO_ROOT)]
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "services/runtime", "lib"], capture_output=True, text=True
    )
    return {
        "podman": first(["podman", "--version"]),
        "podman_info": info,
        "runc": first(["runc", "--version"]),
        "conmon": first(["conmon", "--version"]),
        "slirp4netns": first(["slirp4netns", "--version"]),
        "kernel": os.uname().release,
        "cpus": str(os.cpu_count()),
        "python": sys.version.split()[0],
        "git_head": first([*git, "rev-parse", "HEAD"]),
        "runtime_worktree_dirty": str(bool(dirty.stdout.strip())),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--runs", type=int, default=30, help="timed run --rm repetitions per row (default 30)")
    p.add_argument("--concurrent", type=int, default=50, help="containers started at once (default 50)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the at-once start (default 2)")
    p.add_argument("--reps", type=int, default=5, help="pull and commit repetitions (default 5)")
    p.add_argument("--size-mb", type=int, default=100, help="MiB per layer of the pulled image (default 100)")
    p.add_argument("--layers", type=int, default=3, help="layers of the pulled image (default 3)")
    p.add_argument(
        "--commit-mb", type=int, default=100, help="MB the committed container wrote (default 100)"
    )
    p.add_argument(
        "--user", default=os.environ.get("DOCKYARD_USER", "dockyard"), help="who runs it all, as root"
    )
    p.add_argument("--only", default="run,api,concurrent,pull,commit", help="comma-separated parts to run")
    p.add_argument("--quick", action="store_true", help="a smoke check: small N, sizes and counts")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.concurrent, args.rounds, args.reps = 6, 10, 1, 2
        args.size_mb, args.commit_mb = 10, 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("podman", "runc", "conmon", "slirp4netns", "skopeo", "docker-registry", "setpriv", BUSYBOX):
        if shutil.which(tool) is None:
            print(f"runtime_bench: {tool} not found", file=sys.stderr)
            return 2
    if os.geteuid() == 0:
        pw = pwd.getpwnam(args.user)
        user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    else:
        pw = pwd.getpwuid(os.geteuid())
        user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    parts = set(args.only.split(","))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    load_before = os.getloadavg()
    tar = busybox_tar()
    # /tmp: world-traversable and short (the gateway socket path must fit in sockaddr_un)
    scratch = Path(tempfile.mkdtemp(prefix="dyrtb-"))
    scratch.chmod(0o755)
    user.own(scratch)
    shutil.copy(tar, scratch / "busybox.tar")
    user.own(scratch / "busybox.tar")
    dy = Dockyard(user, scratch)
    pm = Podman(user, scratch)
    res: dict[str, Any] = {}
    rows: list[list[str]] = []

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # so the finally below cleans up

    signal.signal(signal.SIGTERM, on_term)
    try:
        dy.start()
        dy.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        pm.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        driver = pm.out("info", "--format", "{{.Store.GraphDriverName}} {{.Store.GraphOptions}}").strip()
        native = pm.out("info", "--format", '{{index .Store.GraphStatus "Native Overlay Diff"}}').strip()
        print(
            f"podman storage: {driver} (native overlay diff: {native}); dockyard: see `dockyard doctor`",
            flush=True,
        )
        res["storage"] = {"podman": f"{driver} native_overlay_diff={native}"}
        with contextlib.suppress(Exception):
            doc = output(dy.cli("doctor"), dy.env)
            snap = [ln.split(":", 1)[1].strip() for ln in doc.splitlines() if ln.startswith("snapshotter:")]
            res["storage"][OURS] = snap[0] if snap else "?"
            print(f"dockyard snapshotter: {res['storage'][OURS]}", flush=True)
        floor = RuncFloor(user, scratch, scratch / "busybox.tar")
        steps: list[tuple[str, Callable[[], None]]] = [
            ("run", lambda: bench_run_rm(dy, pm, args.runs, res)),
            ("api", lambda: bench_api(dy, floor, args.runs, res)),
            ("concurrent", lambda: bench_concurrent(dy, pm, args.concurrent, args.rounds, res)),
            ("pull", lambda: bench_pull(dy, pm, scratch, args, res)),
            ("commit", lambda: bench_commit(dy, pm, args.reps, args.commit_mb, res)),
        ]
        for part, step in steps:
            if part not in parts:
                continue
            try:
                step()
            except Exception as exc:  # one part failing is a result too: report it, clean up, go on
                res.setdefault("errors", {})[part] = str(exc)
                print(f"  {part}: FAILED: {exc}", flush=True)
                dy.clear()
                pm.clear()
        rows = report(res, args)
        for part, message in res.get("errors", {}).items():
            rows.append([f"{part}: FAILED (see errors in the JSON)", message[:60], "", "", "", ""])
    finally:
        res["versions"] = versions(pm)
        dy.stop()
        if os.geteuid() != 0:  # files of our layers owned by subordinate ids: remove them in a userns
            with contextlib.suppress(Exception):
                pm.used = True
                run(pm.cli("unshare", "rm", "-rf", str(scratch / "state")), pm.env)
        pm.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    header = ["measurement", "Dockyard", "peer (podman / runc)", "ratio", "goal", "met?"]
    print()
    print(fmt_table(header, rows))
    print(
        "\nratio = Dockyard / peer (< 1: Dockyard faster or smaller). Both run runc under conmon on "
        "kernel overlayfs;\nthe API rows' peer is bare `runc run` of a rootless bundle on a plain "
        "directory (host network, no monitor)."
    )
    result = {
        "started": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "args": vars(args),
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "table": {"header": header, "rows": rows},
        **res,
    }
    out = save_results("runtime", stamp, result)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nresults: {out}  (total {result['duration_s']} s; "
        f"load average now {load}, before {load_before[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
