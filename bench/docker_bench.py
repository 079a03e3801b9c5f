"""Dockyard's Docker Engine API vs rootless podman 4.3's Docker-compatible API, side by side in one run.

    .venv/bin/python bench/docker_bench.py            # make bench-docker (as root: both run as `dockyard`)
    .venv/bin/python bench/docker_bench.py --quick    # a smoke check: 5 runs a row
    .venv/bin/python bench/docker_bench.py --runs 40

The same clients drive both servers, as the unprivileged user (``--user``, default ``dockyard``):
the docker CLI (``DOCKER_HOST=unix://…``) and docker-py. Ours is ``dockyard up``'s docker.sock
(the engine, a client of the gateway, which calls the runtime); the peer is
``podman system service --time=0 unix://…/podman.sock`` with runtime_bench's throw-away podman
store and configuration. Both get the same busybox rootfs tar (``dockyard import`` and
``podman import``). Rows, each timed from spawn to exit of a client process (docker-py: in the
process, per call, on a warm client), the two sides taking turns and who goes first flipping every
repetition:

- ``docker run --rm busybox true``;
- ``docker ps -a`` with ``--listed`` created containers on each side;
- ``docker images``;
- docker-py ``containers.run("busybox", "true", remove=True)``.

Then, to tell where our time goes, a ``run --rm``'s parts on our side alone: the same Engine API
requests the docker CLI sends, from a warm connection in this process (the CLI's start-up taken
out), and Create + Attach(start, wait) + Remove through the gateway's gRPC (the engine taken out).

Prints min / median / max per side, the ratio of the medians (ours / podman's; goal <= 0.8) and
writes JSON to ``.cache/bench/docker.json``. Reports; never fails on a missed goal.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_table, median, save_results, terminate
from runtime_bench import IMAGE, OURS, PEER, VENV_BIN, Dockyard, Podman, User, busybox_tar, interleave, run

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
GOAL = 0.8

# docker-py's containers.run, timed per call in one process (its import and first connection are not)
PY_RUNS = """
import json, sys, time, docker
client = docker.from_env()
client.ping()
times = []
for _ in range(int(sys.argv[1])):
    started = time.perf_counter()
    client.containers.run("busybox", "true", remove=True)
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


class DockerClients:
    """The docker CLI and docker-py as the user, pointed at one Engine API socket."""

    def __init__(self, user: User, sock: Path, config: Path, base_env: dict[str, str]) -> None:
        config.mkdir()
        user.own(config)
        self.user, self.sock = user, sock
        self.env = {**base_env, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(config)}
        self.env["HOME"] = str(config)  # docker-py looks for ~/.docker/config.json

    def cli(self, *args: str) -> float:
        return run([*self.user.prefix(), DOCKER, *args], self.env)

    def out(self, *args: str) -> str:
        res = subprocess.run(
            [*self.user.prefix(), DOCKER, *args], capture_output=True, text=True, env=self.env, timeout=120
        )
        if res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({res.returncode}): {res.stderr[-2000:]}")
        return res.stdout

    def py_runs(self, count: int) -> list[float]:
        res = subprocess.run(
            [*self.user.prefix(), str(VENV_BIN / "python"), "-c", PY_RUNS, str(count)],
            capture_output=True,
            text=True,
            env={**self.env, "PYTHONWARNINGS": "ignore"},
            timeout=600,
        )
        if res.returncode != 0:
            raise RuntimeError(f"docker-py runs failed ({res.returncode}): {res.stderr[-2000:]}")
        times: list[float] = json.loads(res.stdout.strip().splitlines()[-1])
        return times

    def ids(self) -> list[str]:
        return self.out("ps", "-aq").split()


class PodmanService:
    """``podman system service`` (podman's Docker-compatible API) on a unix socket, as the user."""

    def __init__(self, pm: Podman, scratch: Path) -> None:
        self.pm = pm
        self.sock = scratch / "podman.sock"
        self.log = scratch / "podman-service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.pm.used = True
        cmd = self.pm.cli("system", "service", "--time=0", f"unix://{self.sock}")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.pm.env)
        deadline = time.monotonic() + 60
        while not _answers(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=30)


class UnixHTTP(http.client.HTTPConnection):
    """HTTP/1.1 on a unix socket: the Engine API from this process on one kept-alive connection."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    conn = UnixHTTP(sock)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


# --------------------------------------------------------------------------- measurements


Timings = dict[str, list[float]]


def side_by_side(
    runs: int, ours: Callable[[], float], peer: Callable[[], float], warmups: int = 2
) -> Timings:
    for _ in range(warmups):
        ours()
        peer()
    times: Timings = {OURS: [], PEER: []}
    for rep in range(runs):
        a, b = interleave(rep, ours, peer)
        times[OURS].append(a)
        times[PEER].append(b)
    return times


def bench_cli(dy: DockerClients, pm: DockerClients, runs: int, listed: int, res: dict[str, Any]) -> None:
    res["cli_run_rm"] = side_by_side(
        runs, lambda: dy.cli("run", "--rm", IMAGE, "true"), lambda: pm.cli("run", "--rm", IMAGE, "true")
    )
    left = {OURS: len(dy.ids()), PEER: len(pm.ids())}
    res["cli_run_rm"]["containers_left"] = left  # type: ignore[assignment]
    _show("docker run --rm busybox true", res["cli_run_rm"])
    for side in (dy, pm):
        for i in range(listed):
            side.out("create", "--name", f"listed-{i}", IMAGE, "true")
    res["cli_ps"] = side_by_side(runs, lambda: dy.cli("ps", "-a"), lambda: pm.cli("ps", "-a"))
    _show(f"docker ps -a ({listed} containers)", res["cli_ps"])
    for side in (dy, pm):
        side.out("rm", "-f", *[f"listed-{i}" for i in range(listed)])
    res["cli_images"] = side_by_side(runs, lambda: dy.cli("images"), lambda: pm.cli("images"))
    _show("docker images", res["cli_images"])


def bench_docker_py(dy: DockerClients, pm: DockerClients, runs: int, res: dict[str, Any]) -> None:
    """In batches that take turns, so a drift of the machine's speed hits both sides alike."""
    batch = 5
    dy.py_runs(2)  # warm-up: the image's first mount, the server's caches
    pm.py_runs(2)
    times: Timings = {OURS: [], PEER: []}
    for rep in range(max(1, runs // batch)):
        a, b = interleave(
            rep,
            lambda: _extend(times[OURS], dy.py_runs(batch)),
            lambda: _extend(times[PEER], pm.py_runs(batch)),
        )
        del a, b
    res["py_run_rm"] = times
    _show('docker-py containers.run("busybox", "true", remove=True)', times)


def _extend(into: list[float], values: list[float]) -> float:
    into.extend(values)
    return sum(values)


def _request(conn: UnixHTTP, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    conn.request(method, path, body=payload, headers=headers)
    reply = conn.getresponse()
    return reply.status, reply.read()


def engine_run_rm(sock: Path) -> dict[str, float]:
    """The requests of docker's ``run --rm`` on a warm connection, each timed: create, wait
    (condition=removed, on its own connection, as docker's CLI does), start, then the wait's reply.
    No attach: ``true`` prints nothing, so this is the engine's and the platform's own cost."""
    v = "/v1.44"
    main, waiter = UnixHTTP(sock), UnixHTTP(sock)
    phases: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        status, body = _request(
            main,
            "POST",
            f"{v}/containers/create",
            {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"AutoRemove": True}},
        )
        if status != 201:
            raise RuntimeError(f"create: {status} {body[:300]!r}")
        cid = json.loads(body)["Id"]
        t1 = time.perf_counter()
        waiter.request("POST", f"{v}/containers/{cid}/wait?condition=removed")
        wait_reply = waiter.getresponse()  # the status line comes first; the body at the removal
        t2 = time.perf_counter()
        status, body = _request(main, "POST", f"{v}/containers/{cid}/start")
        if status != 204:
            raise RuntimeError(f"start: {status} {body[:300]!r}")
        t3 = time.perf_counter()
        result = json.loads(wait_reply.read())
        t4 = time.perf_counter()
        if result.get("StatusCode") != 0:
            raise RuntimeError(f"wait: {result}")
        phases = {"create": t1 - t0, "wait_headers": t2 - t1, "start": t3 - t2, "exit_and_removal": t4 - t3}
        phases["total"] = t4 - t0
    finally:
        main.close()
        waiter.close()
    return phases


def bench_breakdown(dyp: Dockyard, dy: DockerClients, runs: int, res: dict[str, Any]) -> None:
    """Where a ``run --rm``'s time goes on our side: the CLI, the engine, gateway + runtime."""
    for _ in range(2):
        engine_run_rm(dy.sock)
        dyp.api_run("")
    engine: dict[str, list[float]] = {}
    grpc: list[float] = []
    dyp.phases.clear()
    for _ in range(runs):
        for phase, t in engine_run_rm(dy.sock).items():
            engine.setdefault(phase, []).append(t)
        grpc.append(dyp.api_run(""))
    res["breakdown"] = {"engine_http": engine, "gateway_grpc": grpc, "gateway_grpc_phases": dyp.phases}
    parts = " ".join(f"{k} {median(v) * 1000:.0f}" for k, v in engine.items())
    print(f"  ours, Engine API from a warm connection (ms, medians): {parts}", flush=True)
    grpc_parts = " ".join(f"{k} {median(v) * 1000:.0f}" for k, v in dyp.phases.items())
    print(
        f"  ours, gateway gRPC Create+Attach+Remove: {median(grpc) * 1000:.0f} ms ({grpc_parts})", flush=True
    )


def _show(label: str, times: Timings) -> None:
    a, b = times[OURS], times[PEER]
    print(f"  {label}: dockyard {_mmm(a)} | podman {_mmm(b)} | ratio {median(a) / median(b):.2f}", flush=True)


def _mmm(values: Sequence[float]) -> str:
    return "/".join(f"{v * 1000:.0f}" for v in (min(values), median(values), max(values))) + " ms"


# --------------------------------------------------------------------------- report


ROWS = (
    ("cli_run_rm", "docker run --rm busybox true"),
    ("cli_ps", "docker ps -a"),
    ("cli_images", "docker images"),
    ("py_run_rm", "docker-py containers.run(remove=True)"),
)


def report(res: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in ROWS:
        if key not in res:
            continue
        a, b = res[key][OURS], res[key][PEER]
        ratio = median(a) / median(b)
        rows.append(
            [f"{label} (N={len(a)})", _mmm(a), _mmm(b), f"{ratio:.2f}", "yes" if ratio <= GOAL else "NO"]
        )
    return rows


def versions() -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return done.stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    import docker

    return {
        "docker_cli": first([DOCKER, "--version"]),
        "docker_py": docker.__version__,
        "podman": first(["podman", "--version"]),
        "kernel": os.uname().release,
        "cpus": str(os.cpu_count()),
        "python": sys.version.split()[0],
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--runs", type=int, default=20, help="timed repetitions per row and side (default 20)")
    p.add_argument("--listed", type=int, default=5, help="containers listed by the ps row (default 5)")
    p.add_argument(
        "--user", default=os.environ.get("DOCKYARD_USER", "dockyard"), help="who runs it all, as root"
    )
    p.add_argument("--quick", action="store_true", help="a smoke check: 5 runs a row")
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("podman", "runc", "conmon", "setpriv", DOCKER):
        if shutil.which(tool) is None:
            print(f"docker_bench: {tool} not found", file=sys.stderr)
            return 2
    pw = pwd.getpwnam(args.user) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    load_before = os.getloadavg()
    # /tmp: world-traversable and short (socket paths must fit in sockaddr_un)
    scratch = Path(tempfile.mkdtemp(prefix="dydkb-"))
    scratch.chmod(0o755)
    user.own(scratch)
    shutil.copy(busybox_tar(), scratch / "busybox.tar")
    user.own(scratch / "busybox.tar")
    dyp, pm = Dockyard(user, scratch), Podman(user, scratch)
    service = PodmanService(pm, scratch)
    res: dict[str, Any] = {}
    try:
        dyp.start()
        dyp.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        pm.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        service.start()
        dy = DockerClients(user, dyp.state / "docker.sock", scratch / "docker-config-dockyard", dyp.env)
        peer = DockerClients(user, service.sock, scratch / "docker-config-podman", pm.env)
        bench_cli(dy, peer, args.runs, args.listed, res)
        bench_docker_py(dy, peer, args.runs, res)
        bench_breakdown(dyp, dy, args.runs, res)
    finally:
        with contextlib.suppress(Exception):
            res["versions"] = versions()
        dyp.stop()
        service.stop()
        pm.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    rows = report(res)
    header = ["measurement", "Dockyard min/med/max", "podman min/med/max", "ratio", f"<= {GOAL}x?"]
    print()
    print(fmt_table(header, rows))
    print(
        "\nratio = Dockyard's median / podman's (< 1: Dockyard faster). Same clients, same user, same image."
    )
    result = {
        "started": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "args": vars(args),
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "table": {"header": header, "rows": rows},
        **res,
    }
    out = save_results("docker", stamp, result)
    print(f"\nresults: {out}  (total {result['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
