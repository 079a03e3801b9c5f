"""Dockyard's builder vs rootless buildah (Debian 1.28, ``buildah bud --layers``) in one run.

    .venv/bin/python bench/build_bench.py            # make bench-build (as root: both run as `dockyard`)
    .venv/bin/python bench/build_bench.py --reps 5

Everything runs as the unprivileged user ($DOCKYARD_USER, ``setpriv`` when started as root). One
Dockerfile both parse: FROM a busybox image imported into each store, a 20 MB COPY, two RUN
steps, metadata.
Buildah gets a throw-away store and the same busybox tar (``tests/e2e/buildah_store.py``, shared
with the cross-check test). Measured per repetition, alternating who goes first:

- cold: a build with the cache emptied (dockyard ``--no-cache``; buildah ``--no-cache --layers``),
- cached: the same build again, nothing changed (every step a cache hit for both).

Prints medians and the ratio ours/buildah; writes ``.cache/bench/build.json``. Reports, never fails
on a missed goal (issue 8: cold ≤ 1.0x, cached ≤ 0.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

DOCKERFILE = """\
FROM busybox
ENV APP=/srv/app MODE=bench
WORKDIR /srv/app
COPY blob.bin /srv/app/blob.bin
RUN mkdir -p /srv/out && echo built > /srv/out/stamp
RUN wc -c /srv/app/blob.bin > /srv/out/size
LABEL bench=build
EXPOSE 8080
CMD ["cat", "/srv/out/stamp"]
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-6:])} → {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=20)
    args = ap.parse_args()

    import e2e_platform as ep
    from buildah_store import Buildah

    from dockyard.adapters.nats.server import free_port

    scratch = Path(tempfile.mkdtemp(prefix="build-bench-"))
    ep.make_workdir(scratch)
    ctx = scratch / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "blob.bin").write_bytes(os.urandom(args.size_mb << 20))
    for p in [ctx, *ctx.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    tar = ep.busybox_rootfs_tar(scratch / "busybox.tar")

    buildah = Buildah(scratch / "buildah")  # a private store and config, as the cross-check test uses
    platform = ep.start(scratch / "state", (free_port(), free_port()))
    results: dict[str, dict[str, list[float]]] = {"dockyard": {"cold": [], "cached": []}}
    results["buildah"] = {"cold": [], "cached": []}
    try:
        platform.ok("import", str(tar), "busybox:latest", "-c", 'CMD ["sh"]')
        buildah.import_rootfs(tar, "busybox")
        cli = [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway, "build", "-q", "-t", "bench"]
        ours = {"cold": [*cli, "--no-cache", str(ctx)], "cached": [*cli, str(ctx)]}
        bud = [*buildah.argv, "bud", "--layers", "--isolation", "rootless", "-t", "bench"]
        theirs = {"cold": [*bud, "--no-cache", str(ctx)], "cached": [*bud, str(ctx)]}
        for rep in range(args.reps + 1):  # the first repetition warms up both
            order = [("dockyard", ours, None), ("buildah", theirs, buildah.env)]
            if rep % 2:
                order.reverse()
            for name, cmds, env in order:
                for kind in ("cold", "cached"):
                    t = timed(cmds[kind], env)
                    if rep:
                        results[name][kind].append(t)
    finally:
        ep.clean_stop(platform)
        buildah.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)

    goals = {"cold": 1.0, "cached": 0.5}
    print(f"{'build':8} {'dockyard s':>11} {'buildah s':>10} {'ratio':>7} {'goal':>6}")
    summary = {}
    for kind in ("cold", "cached"):
        a = statistics.median(results["dockyard"][kind])
        b = statistics.median(results["buildah"][kind])
        summary[kind] = {"dockyard": a, "buildah": b, "ratio": a / b, "goal": goals[kind]}
        met = "met" if a / b <= goals[kind] else "missed"
        print(f"{kind:8} {a:11.3f} {b:10.3f} {a / b:7.2f} {goals[kind]:5.1f}x {met}")
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "build.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
