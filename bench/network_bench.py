"""User networks: Dockyard vs rootless podman 4.3, side by side in one run.

    .venv/bin/python bench/network_bench.py            # make bench-network (as root: both run as `dockyard`)
    .venv/bin/python bench/network_bench.py --quick    # smoke check: small transfers, few reps

Both platforms run as the unprivileged user (``setpriv``), each with a throw-away store (the setup of
bench/runtime_bench.py: podman with runc, cgroupfs, overlay). Each creates a user network
(``dockyard network create`` / ``podman network create``, podman's defaults: CNI bridge in its
rootless netns, rootlessport for ``-p``) and runs on it, from the same busybox tar:

- ``srv``: ``httpd`` serving ``/tmp/www/big`` (``--size-mb``, zeros, written by dd in the container
  before httpd starts) and ``/tmp/www/small`` (1 byte); published with ``-p HOSTPORT:80``;
- ``cli``: ``sleep`` on the same network, the client side.

Measured, the contenders alternating every repetition (``--reps``, median reported):

1. container→container throughput: ``wget -O /dev/null http://SRV_IP/big`` inside ``cli``, timed by
   busybox ``time`` inside the container (so exec overhead is not counted; 10 ms resolution, hence
   transfers of a second or more); MB/s = size / real time.
2. connect latency: ``--conns`` sequential ``nc SRV_IP 80 </dev/null`` (TCP connect, httpd answers
   the empty request and closes) inside ``cli``, timed the same way; ms per connection. Each includes
   a fork+exec of busybox nc, the same on both sides.
3. host→container through ``-p``: the host's ``busybox wget -O /dev/null http://127.0.0.1:HOSTPORT/big``,
   timed on the host; MB/s.

Addresses, not names, are used by the clients: podman 4.3's CNI backend resolves names only with
the dnsname plugin, which Debian does not ship, and name lookup is not what is measured.
Prints a table (ours, podman, ratio with higher = better for Dockyard, goal ≥ 1.0x) and writes JSON to
``.cache/bench/network.json``. Everything it started is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR, fmt_table, free_port, median
from runtime_bench import IMAGE, Dockyard, Podman, User, busybox_tar, output, run

MB = 1_000_000
NET = "benchnet"


def _real_seconds(stderr: str) -> float:
    """busybox time's "real\t0m 1.23s" (or "1m 2.50s")."""
    m = re.search(r"real\s+(\d+)m\s*([\d.]+)s", stderr)
    if not m:
        raise RuntimeError(f"no timing in: {stderr[-500:]}")
    return int(m.group(1)) * 60 + float(m.group(2))


class Contender:
    """One platform's CLI seen through the verbs both share."""

    def __init__(self, name: str, cli: Callable[..., list[str]], env: dict[str, str]) -> None:
        self.name = name
        self.cli = cli
        self.env = env
        self.port = free_port()
        self.srv_ip = ""

    def do(self, *args: str, timeout: float = 300) -> None:
        run(self.cli(*args), self.env, timeout)

    def out(self, *args: str) -> str:
        return output(self.cli(*args), self.env)

    def timed_in(self, container: str, script: str) -> float:
        """Seconds ``script`` took inside ``container`` (busybox time, no exec overhead)."""
        res = subprocess.run(
            self.cli("exec", container, "sh", "-c", f"time sh -c '{script}'"),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=600,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{self.name}: {script} failed ({res.returncode}): {res.stderr[-1000:]}")
        return _real_seconds(res.stderr)

    def setup(self, size_mb: int, ip_of: Callable[[str], str]) -> None:
        self.do("network", "create", NET)
        serve = (
            f"mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1000000 count={size_mb} 2>/dev/null"
            " && echo x > /tmp/www/small && touch /tmp/ready && exec httpd -f -p 80 -h /tmp/www"
        )
        self.do(
            "run", "-d", "--name", "srv", "--network", NET, "-p", f"{self.port}:80", IMAGE, "sh", "-c", serve
        )
        self.do("run", "-d", "--name", "cli", "--network", NET, IMAGE, "sleep", "3600")
        deadline = time.monotonic() + 120
        while subprocess.run(self.cli("exec", "srv", "test", "-e", "/tmp/ready"), env=self.env).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: srv never got ready")
            time.sleep(0.2)
        self.srv_ip = ip_of("srv")
        # warm-up: one transfer each way
        self.c2c()
        self.host()

    def c2c(self) -> float:
        return self.timed_in("cli", f"wget -q -O /dev/null http://{self.srv_ip}/big")

    def latency(self, conns: int) -> float:
        return self.timed_in(
            "cli", f"for i in $(seq {conns}); do nc {self.srv_ip} 80 </dev/null >/dev/null; done"
        )

    def host(self) -> float:
        started = time.perf_counter()
        run(["busybox", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{self.port}/big"], timeout=600)
        return time.perf_counter() - started

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self.do("rm", "-f", "srv", "cli")
        with contextlib.suppress(Exception):
            self.do("network", "rm", NET)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--user", default="dockyard")
    parser.add_argument("--size-mb", type=int, default=2000, help="the transferred file (MB)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--conns", type=int, default=500, help="sequential connections per latency rep")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.reps, args.conns = 300, 3, 100
    pw = pwd.getpwnam(args.user) if os.geteuid() == 0 else pwd.getpwuid(os.getuid())
    user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    scratch = Path(tempfile.mkdtemp(prefix="dockyard-netbench-", dir="/tmp"))
    scratch.chmod(0o755)
    user.own(scratch)
    dy = Dockyard(user, scratch)
    pm = Podman(user, scratch)
    res: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "size_mb": args.size_mb,
        "reps": args.reps,
        "conns": args.conns,
        "podman": output(["podman", "--version"]).strip(),
    }
    ours = peer = None
    try:
        tar = busybox_tar()
        dy.start()
        dy.do("import", str(tar), IMAGE)
        pm.do("import", str(tar), IMAGE)
        ours = Contender("dockyard", dy.cli, dy.env)
        peer = Contender("podman", pm.cli, pm.env)

        def dy_ip(name: str) -> str:
            return str(json.loads(ours.out("inspect", name))[0]["networks"][0]["ip"])

        def pm_ip(name: str) -> str:
            nets = json.loads(peer.out("inspect", name))[0]["NetworkSettings"]["Networks"]
            return str(nets[NET]["IPAddress"])

        ours.setup(args.size_mb, dy_ip)
        peer.setup(args.size_mb, pm_ip)
        res["mtu"] = {
            "dockyard": ours.out("exec", "cli", "cat", "/sys/class/net/eth0/mtu").strip(),
            "podman": peer.out("exec", "cli", "cat", "/sys/class/net/eth0/mtu").strip(),
        }
        samples: dict[str, dict[str, list[float]]] = {
            k: {"dockyard": [], "podman": []} for k in ("c2c", "latency", "host")
        }
        for rep in range(args.reps):
            order = [ours, peer] if rep % 2 == 0 else [peer, ours]
            for c in order:
                samples["c2c"][c.name].append(c.c2c())
                samples["latency"][c.name].append(c.latency(args.conns))
                samples["host"][c.name].append(c.host())
            print(
                f"  rep {rep + 1}/{args.reps}: "
                + "  ".join(
                    f"{k} dy {samples[k]['dockyard'][-1]:.2f}s pm {samples[k]['podman'][-1]:.2f}s"
                    for k in samples
                ),
                flush=True,
            )
        res["samples_s"] = samples
    finally:
        for c in (ours, peer):
            if c is not None:
                c.teardown()
        dy.stop()
        pm.stop()
        runtime = dy.state / "runtime"
        for pid_file in (
            runtime / "networks" / "slirp.pid",
            runtime / "networks" / "netns.pid",
            runtime / "pause.pid",
        ):
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().split()[0]), 9)
        shutil.rmtree(scratch, ignore_errors=True)

    size = args.size_mb * MB
    rows = []
    summary: dict[str, Any] = {}
    for key, label, unit in (
        ("c2c", "container→container throughput", "MB/s"),
        ("latency", f"connect latency (nc, {args.conns} sequential)", "ms/conn"),
        ("host", "host→container through -p", "MB/s"),
    ):
        a, b = median(samples[key]["dockyard"]), median(samples[key]["podman"])
        if key == "latency":
            va, vb = a / args.conns * 1000, b / args.conns * 1000
            ratio = vb / va  # lower is better: >1 means Dockyard is faster
        else:
            va, vb = size / a / MB, size / b / MB
            ratio = va / vb
        summary[key] = {"dockyard": va, "podman": vb, "unit": unit, "ratio": ratio}
        rows.append(
            [
                label,
                f"{va:,.1f} {unit}",
                f"{vb:,.1f} {unit}",
                f"{ratio:.2f}x",
                "≥1.0x",
                "yes" if ratio >= 1 else "NO",
            ]
        )
    res["summary"] = summary
    print()
    print(fmt_table(["measurement", "Dockyard", "podman", "ratio (Dockyard/podman)", "goal", "met?"], rows))
    print(f"\nMTU of eth0: dockyard {res['mtu']['dockyard']}, podman {res['mtu']['podman']}; {res['podman']}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "network.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
