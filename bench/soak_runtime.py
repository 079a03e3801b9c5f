"""A soak of the whole platform under hostile neighbours and crashes (``make soak-runtime``).

    .venv/bin/python bench/soak_runtime.py                      # 20 minutes, 16 clients
    SOAK_MINUTES=3 .venv/bin/python bench/soak_runtime.py       # a short one

``dockyard up`` runs as the unprivileged user with its whole state on a small filesystem of its
own (a loop-mounted ext4 of ``--disk-gib``), so a container can fill "the disk" without filling
the machine's. Meanwhile:

* ``--clients`` well-behaved clients loop through the CLI, as a user would: ``run -d`` a container
  that prints a line and sleeps, ``exec`` in it (the output is checked), ``logs`` (checked),
  every fourth round ``commit`` it and ``rmi`` the image, then ``rm -f``;
* one container fork-bombs (``f(){ f|f& }; f``) the whole time, started again when it ends;
* one container fills the disk (``dd`` until ENOSPC); when it has, ``rm -f`` must remove it at
  once (that is checked), and it starts again a while later;
* every 40-80 s one of these is killed with SIGKILL: the runtime service, the gateway, or the
  conmon of one of a few "victim" containers kept for that (the clients' containers are theirs).

What counts: a client step that fails is retried for up to 90 s while the platform is
recovering (a killed service is restarted by ``up``) — as a careful client would. A step that
still fails, or gives the wrong output, is an error. A step refused while the filler holds the
disk full is not an error when its message names the lack of space in one line (it is counted
apart, and a refusal that does not say so is an error); nor is a log line missing from a
container that lived through a full disk (output the disk could not take; counted apart). A
``run`` retried after a kill may find its container made by the first try: it is started, as a
careful client would (podman and docker leave such a container Created too). At the end every
container is removed and the run checks that nothing is left: no containers, no container
directories, no ``commit-*`` temporaries, no conmon or container processes, no mounts under the
state dir. The
platform's RSS and open descriptors (its service processes, summed) are sampled every 10 s;
"flat" as in ``bench/soak.py``. Exit status 0 only with zero errors, nothing left, and flat.
Results also go to ``.cache/bench/soak-runtime-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR
from runtime_bench import (
    IMAGE,
    Dockyard,
    User,
    all_pids,
    busybox_tar,
    children_map,
    cmdline,
    comm,
    descendants,
)
from soak import flat

SERVICES = ("dockyard.runtime", "dockyard.gateway", "dockyard.builder", "dockyard.registry", "nats-server")
RETRY_S = 90.0
NO_SPACE = ("no space left", "disk is full", "not enough space", "enospc")


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    refused_full: int = 0
    lost_to_full_disk: int = 0
    errors: list[str] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.ops[key] = self.ops.get(key, 0) + n

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)
        print(f"ERROR {what}", flush=True)


class Soak:
    def __init__(self, dy: Dockyard, tally: Tally, deadline: float) -> None:
        self.dy = dy
        self.tally = tally
        self.deadline = deadline
        self.full: list[list[float]] = []  # [from, to] of each fill: the filler's start to its removal

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.dy.cli(*args), capture_output=True, text=True, env=self.dy.env, timeout=timeout
        )

    def overlaps_full_disk(self, since: float) -> bool:
        return any(end >= since for _, end in self.full)

    def step(
        self,
        what: str,
        *args: str,
        expect: str | None = None,
        since: float = 0.0,
        resume: tuple[str, ...] = (),
    ) -> str | None:
        """One client step, retried while the platform recovers; None when it was refused for space.

        A missing ``expect`` from a container that lived (from ``since``) through a full disk is
        output the disk could not take, as on any engine: counted apart, not an error. ``resume``:
        what to run instead when a retry finds the name taken — the first try made the container
        before a kill cut it short, and a careful client starts it rather than failing."""
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                res = self.cli(*args)
                out, err = res.stdout, res.stderr.strip()
            except subprocess.TimeoutExpired:
                res, out, err = None, "", "timed out after 120 s"
            if res is not None and res.returncode == 0 and (expect is None or expect in out):
                self.tally.count(what)
                return out
            if res is not None and any(s in err.lower() for s in NO_SPACE):
                if len(err.splitlines()) != 1 or "Traceback" in err:
                    self.tally.error(f"{what}: a refusal for space that is not one line: {err[:300]!r}")
                with self.tally.lock:
                    self.tally.refused_full += 1
                return None
            lost = res is not None and res.returncode == 0 and since and self.overlaps_full_disk(since)
            if lost and time.monotonic() - started > 10:  # not just slow: gone
                with self.tally.lock:
                    self.tally.lost_to_full_disk += 1
                return out
            if resume and tries > 1 and "already in use" in err:
                self.tally.count(f"{what} resumed after a kill")
                args = resume
                continue
            if time.monotonic() - started > RETRY_S:
                why = err or f"output {out[:200]!r} lacks {expect!r}"
                self.tally.error(f"{what} ({' '.join(args)}): {why[:400]}")
                return ""
            with self.tally.lock:
                self.tally.retried += 1
            time.sleep(2)

    # --- the well-behaved ---------------------------------------------------------------------------

    def client(self, n: int) -> None:
        rounds = 0
        while time.monotonic() < self.deadline:
            rounds += 1
            name = f"c{n}-{rounds}"
            cmd = f"echo ready-{name}; sleep 300"
            born = time.monotonic()
            made = self.step(
                "run", "run", "-d", "--name", name, IMAGE, "sh", "-c", cmd, resume=("start", name)
            )
            if made is None:
                self.cleanup(name)
                time.sleep(3)
                continue
            self.step("exec", "exec", name, "echo", f"inside-{name}", expect=f"inside-{name}")
            self.step("logs", "logs", name, expect=f"ready-{name}", since=born)
            if rounds % 4 == 0:
                image = f"soak/c{n}:{rounds}"
                if self.step("commit", "commit", name, image):
                    self.step("rmi", "rmi", image)
            self.cleanup(name)

    def cleanup(self, name: str) -> bool:
        """``rm -f``, which must work whatever else is happening (a full disk included)."""
        started = time.monotonic()
        while True:
            res = self.cli("rm", "-f", name)
            gone = res.returncode == 0 or "no such container" in res.stderr.lower()
            if gone:
                self.tally.count("rm")
                return True
            if time.monotonic() - started > RETRY_S:
                self.tally.error(f"rm -f {name}: {res.stderr.strip()[:400]}")
                return False
            time.sleep(2)

    # --- the hostile --------------------------------------------------------------------------------

    def fork_bomb(self) -> None:
        while time.monotonic() < self.deadline:
            self.cli("rm", "-f", "bomb")
            res = self.cli("run", "-d", "--name", "bomb", IMAGE, "sh", "-c", "f(){ f|f& }; f; sleep 600")
            if res.returncode == 0:
                self.tally.count("fork-bomb started")
            time.sleep(60)

    def filler(self) -> None:
        while time.monotonic() < self.deadline:
            self.cli("rm", "-f", "filler")
            res = self.cli(
                "run",
                "-d",
                "--name",
                "filler",
                IMAGE,
                "sh",
                "-c",
                "dd if=/dev/zero of=/fill bs=1M; sleep 600",
            )
            if res.returncode != 0:
                time.sleep(10)
                continue
            self.tally.count("filler started")
            window = [time.monotonic(), float("inf")]
            self.full.append(window)
            for _ in range(120):  # until its dd has stopped: the disk is full
                time.sleep(1)
                logs = self.cli("logs", "filler")
                if "No space left" in logs.stdout + logs.stderr:
                    break
            fs = os.statvfs(self.dy.state)
            free_mib = fs.f_bavail * fs.f_frsize >> 20
            self.tally.count("disk filled" if free_mib < 64 else "filler stopped short of full")
            print(f"filler: {free_mib} MiB left on the platform's filesystem", flush=True)
            time.sleep(5)  # let the clients meet the full disk
            removed = self.cleanup("filler")  # retried like the clients' (a kill may be under way)
            window[1] = time.monotonic()
            if removed:
                self.tally.count("filler removed on a full disk")
            time.sleep(random.uniform(90, 150))

    def killer(self) -> None:
        victims = [f"victim-{i}" for i in range(3)]
        for v in victims:
            self.cli("run", "-d", "--name", v, IMAGE, "sleep", "3600")
        while time.monotonic() < self.deadline - 60:  # the last minute recovers
            time.sleep(random.uniform(40, 80))
            target = random.choice(["runtime", "gateway", "conmon"])
            if target == "conmon":
                v = random.choice(victims)
                pid = self.conmon_of(v)
                if pid:
                    self.kill(pid, f"conmon of {v}")
                self.cli("rm", "-f", v)
                self.cli("run", "-d", "--name", v, IMAGE, "sleep", "3600")
            else:
                pid = self.service_pid(f"dockyard.{target}")
                if pid:
                    self.kill(pid, target)

    def kill(self, pid: int, what: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            self.tally.kills.append((round(time.monotonic(), 1), what))
            print(f"killed {what} (pid {pid})", flush=True)

    def conmon_of(self, name: str) -> int:
        res = self.cli("inspect", name)
        with contextlib.suppress(ValueError, IndexError, KeyError):
            cid = json.loads(res.stdout)[0]["id"]
            for pid in all_pids():
                if comm(pid) == "conmon" and cid in cmdline(pid):
                    return pid
        return 0

    def service_pid(self, module: str) -> int:
        assert self.dy.proc is not None
        for pid in descendants(self.dy.proc.pid, children_map()):
            if module in cmdline(pid):
                return pid
        return 0

    def platform_pids(self) -> list[int]:
        assert self.dy.proc is not None
        kids = children_map()
        return [self.dy.proc.pid] + [
            p for p in descendants(self.dy.proc.pid, kids) if any(s in cmdline(p) for s in SERVICES)
        ]

    def sampler(self, out: list[tuple[float, int, int]], started: float) -> None:
        while time.monotonic() < self.deadline:
            rss = fds = 0
            for pid in self.platform_pids():
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    rss += next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:"))
                    fds += len(os.listdir(f"/proc/{pid}/fd"))
            out.append((round(time.monotonic() - started, 1), rss, fds))
            time.sleep(10)


def leftovers(soak: Soak, state: Path) -> list[str]:
    """What is left once every container is removed: each a line."""
    found = []
    res = soak.cli("ps", "-a", "-q")
    if res.stdout.strip():
        found.append(f"containers still listed: {res.stdout.split()}")
    containers = state / "runtime" / "containers"
    if containers.is_dir():
        found += [f"container directory {p.name}" for p in containers.iterdir() if not p.name.startswith(".")]
    found += [f"temporary {p}" for p in state.rglob("commit-*")]
    for pid in all_pids():
        if comm(pid) == "conmon" and str(state) in cmdline(pid):
            found.append(f"conmon {pid} still running")
    with open("/proc/self/mountinfo") as fh:
        mounts = [ln.split()[4] for ln in fh if f"{state}/" in ln.split()[4]]
    found += [f"mount {m}" for m in mounts]
    images = soak.cli("images", "-q").stdout.split()
    if len(images) > 1:
        found.append(f"images besides {IMAGE}: {len(images) - 1}")
    return found


def loop_disk(scratch: Path, gib: float, user: User) -> Path:
    image = scratch.with_suffix(".img")
    subprocess.run(["truncate", "-s", f"{int(gib * 1024)}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(scratch)], check=True)
    scratch.chmod(0o755)
    user.own(scratch)
    return image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "20")))
    p.add_argument("--clients", type=int, default=int(os.environ.get("SOAK_CLIENTS", "16")))
    p.add_argument("--disk-gib", type=float, default=3.0, help="size of the platform's filesystem")
    p.add_argument("--user", default=os.environ.get("DOCKYARD_USER", "dockyard"))
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("soak_runtime: run as root (it mounts the platform's own small filesystem)", file=sys.stderr)
        return 2
    random.seed(args.seed)
    pw = pwd.getpwnam(args.user)
    user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    tar = busybox_tar()
    scratch = Path(tempfile.mkdtemp(prefix="dysoak-"))  # short: socket paths must fit sockaddr_un
    image = loop_disk(scratch, args.disk_gib, user)
    shutil.copy(tar, scratch / "busybox.tar")
    user.own(scratch / "busybox.tar")
    dy = Dockyard(user, scratch)
    tally = Tally()
    samples: list[tuple[float, int, int]] = []
    left: list[str] = []
    started = time.monotonic()
    try:
        dy.start()
        dy.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        soak = Soak(dy, tally, started + args.minutes * 60)
        threads = [threading.Thread(target=soak.client, args=(n,), daemon=True) for n in range(args.clients)]
        threads += [
            threading.Thread(target=f, daemon=True) for f in (soak.fork_bomb, soak.filler, soak.killer)
        ]
        threads.append(threading.Thread(target=soak.sampler, args=(samples, started), daemon=True))
        for t in threads:
            t.start()
        for t in threads[: args.clients]:
            t.join()
        for t in threads[args.clients :]:
            t.join(timeout=120)
        ids = soak.cli("ps", "-a", "-q").stdout.split()
        if ids:
            soak.cli("rm", "-f", *ids, timeout=300)
        time.sleep(3)
        left = leftovers(soak, dy.state)
    finally:
        with contextlib.suppress(Exception):
            dy.stop()
        subprocess.run(["umount", "-l", str(scratch)], check=False)
        image.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)

    rss_ok, rss_first, rss_last = flat([s[1] for s in samples], warmup=6, tolerance=0.15)
    fds_ok, fds_first, fds_last = flat([s[2] for s in samples], warmup=6, tolerance=0.0, absolute=32)
    result: dict[str, Any] = {
        "minutes": args.minutes,
        "clients": args.clients,
        "ops": tally.ops,
        "retried_steps": tally.retried,
        "refused_for_space": tally.refused_full,
        "log_lines_lost_to_full_disk": tally.lost_to_full_disk,
        "errors": tally.errors,
        "kills": [what for _, what in tally.kills],
        "left_behind": left,
        "rss_kb": {"first_third": rss_first, "last_third": rss_last, "flat": rss_ok},
        "fds": {"first_third": fds_first, "last_third": fds_last, "flat": fds_ok},
        "samples": samples,
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out = CACHE_DIR / f"soak-runtime-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    print(f"results: {out}")
    return 0 if not tally.errors and not left and rss_ok and fds_ok else 1


if __name__ == "__main__":
    sys.exit(main())
