"""Container logs: Dockyard vs rootless podman 4.3, side by side in one run (``make bench-logs``).

    .venv/bin/python bench/logs_bench.py               # 200 MB of output, 3 repetitions
    .venv/bin/python bench/logs_bench.py --mb 50 --reps 2

Both platforms as the unprivileged user (``setpriv`` when root), each container writing ``--mb``
MB of 100-byte lines (``yes LINE | head -c N``) into its k8s-file log under conmon (Dockyard with
``--log-opt max-size=-1`` so nothing rotates away). Measured, alternating who goes first:

- ``logs`` of the stopped container, to a file: MB/s of output, end to end through each CLI;
- ``logs -f`` started with ``run -d`` of a fresh writer: the MB/s it delivered until the writer's
  last byte was out, against how fast the writer wrote (from the container's start and finish
  times): a follower that keeps up delivers at the writer's rate.

Prints a table and writes ``.cache/bench/logs.json``. Reports; never fails on a missed goal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR, fmt_table, median
from runtime_bench import IMAGE, Dockyard, Podman, User, busybox_tar

LINE = "0123456789" * 9 + "abcdefghi"  # 99 characters + the newline: 100-byte lines
MB = 1_000_000


def writer(size: int) -> list[str]:
    return ["sh", "-c", f"yes {LINE} | head -c {size}"]


def logs_of_stopped(tool: Dockyard | Podman, name: str, out: Path) -> float:
    """Seconds for ``logs NAME > out`` (checked: every byte there)."""
    started = time.perf_counter()
    with out.open("wb") as sink:
        subprocess.run(tool.cli("logs", name), stdout=sink, stderr=subprocess.PIPE, env=tool.env, check=True)
    return time.perf_counter() - started


def follow_rate(
    tool: Dockyard | Podman, name: str, size: int, extra: list[str], out: Path
) -> tuple[float, float]:
    """(MB/s ``logs -f`` delivered, MB/s the writer wrote) for a fresh writer of ``size`` bytes."""
    subprocess.run(tool.cli("rm", "-f", name), capture_output=True, env=tool.env)
    started = time.perf_counter()
    subprocess.run(
        tool.cli("run", "-d", "--name", name, *extra, IMAGE, *writer(size)),
        capture_output=True,
        env=tool.env,
        check=True,
    )
    with out.open("wb") as sink:
        subprocess.run(
            tool.cli("logs", "-f", name), stdout=sink, stderr=subprocess.PIPE, env=tool.env, timeout=900
        )
    delivered = time.perf_counter() - started
    got = out.stat().st_size
    doc = json.loads(subprocess.run(tool.cli("inspect", name), capture_output=True, env=tool.env).stdout)[0]
    state = doc.get("State") or doc  # podman: docker's shape; Dockyard: its API message
    times = [state.get("StartedAt") or state.get("started"), state.get("FinishedAt") or state.get("finished")]
    wrote = _seconds_between(*times) if all(times) else 0.0
    return got / MB / delivered, (size / MB / wrote if wrote > 0 else 0.0), got / size


def _seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    def parse(text: str) -> datetime:
        head, _, frac = text.partition(".")
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits) :] or "+00:00"
        return datetime.fromisoformat(f"{head}.{digits[:6].ljust(6, '0')}{zone.replace('Z', '+00:00')}")

    return (parse(end) - parse(start)).total_seconds()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--mb", type=int, default=200, help="MB of output per container (default 200)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    p.add_argument("--user", default=os.environ.get("DOCKYARD_USER", "dockyard"))
    args = p.parse_args(argv)
    pw = pwd.getpwnam(args.user) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    user = User(pw.pw_name, pw.pw_uid, pw.pw_gid)
    size = args.mb * MB
    scratch = Path(tempfile.mkdtemp(prefix="dylogb-"))
    scratch.chmod(0o755)
    user.own(scratch)
    shutil.copy(busybox_tar(), scratch / "busybox.tar")
    user.own(scratch / "busybox.tar")
    dy, pm = Dockyard(user, scratch), Podman(user, scratch)
    res: dict[str, Any] = {"mb": args.mb, "reps": args.reps}
    ours_extra = ["--log-opt", "max-size=-1"]
    try:
        dy.start()
        dy.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        pm.do("import", str(scratch / "busybox.tar"), f"{IMAGE}:latest")
        dy.do("run", "--name", "stopped", *ours_extra, IMAGE, *writer(size), timeout=900)
        pm.do("run", "--name", "stopped", IMAGE, *writer(size), timeout=900)
        read: dict[str, list[float]] = {"dockyard": [], "podman": []}
        follow: dict[str, list[tuple[float, float, float]]] = {"dockyard": [], "podman": []}
        for rep in range(args.reps):
            order: list[tuple[str, Dockyard | Podman, list[str]]] = [
                ("dockyard", dy, ours_extra),
                ("podman", pm, []),
            ]
            for name, tool, extra in order if rep % 2 == 0 else reversed(order):
                out = scratch / f"out-{name}"
                seconds = logs_of_stopped(tool, "stopped", out)
                if out.stat().st_size != size:
                    raise RuntimeError(f"{name} logs gave {out.stat().st_size} of {size} bytes")
                read[name].append(size / MB / seconds)
                follow[name].append(follow_rate(tool, "follower", size, extra, out))
                out.unlink()
        res["logs_mb_s"] = {k: median(v) for k, v in read.items()}
        res["follow_mb_s"] = {k: median([d for d, _, _ in v]) for k, v in follow.items()}
        res["writer_mb_s"] = {k: median([w for _, w, _ in v]) for k, v in follow.items()}
        res["follow_delivered"] = {k: min(share for _, _, share in v) for k, v in follow.items()}
    finally:
        dy.stop()
        pm.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [
        [f"logs of a stopped container ({args.mb} MB)", f"{res['logs_mb_s']['dockyard']:.0f} MB/s",
         f"{res['logs_mb_s']['podman']:.0f} MB/s",
         f"{res['logs_mb_s']['podman'] / res['logs_mb_s']['dockyard']:.2f}", ">= 100 MB/s"],
        ["logs -f of a writer, delivered", f"{res['follow_mb_s']['dockyard']:.0f} MB/s",
         f"{res['follow_mb_s']['podman']:.0f} MB/s",
         f"{res['follow_mb_s']['podman'] / res['follow_mb_s']['dockyard']:.2f}", ">= 25 MB/s"],
        ["  the writer wrote at", f"{res['writer_mb_s']['dockyard']:.0f} MB/s",
         f"{res['writer_mb_s']['podman']:.0f} MB/s", "", ""],
        ["  of the output, logs -f delivered (worst)", f"{res['follow_delivered']['dockyard']:.0%}",
         f"{res['follow_delivered']['podman']:.0%}", "", "100 %"],
    ]  # fmt: skip
    print(fmt_table(["measurement", "Dockyard", "podman", "time ratio", "goal"], rows))
    print("\ntime ratio = Dockyard's time / podman's for the same bytes (< 1: Dockyard faster).")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        (CACHE_DIR / "logs.json").write_text(json.dumps({**res, "table": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
