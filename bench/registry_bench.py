"""Dockyard's registry vs CNCF distribution 2.8, side by side: push, pull, 50 concurrent pulls, peak RSS.

    .venv/bin/python bench/registry_bench.py              # 3 layers x 100 MiB, 5 reps (make bench-registry)
    .venv/bin/python bench/registry_bench.py --quick      # 3 x 10 MiB, 2 reps, 1 round: a smoke check
    .venv/bin/python bench/registry_bench.py --size-mb 50 --reps 3 --clients 20

What it does, in one run:

1. Builds (once, cached under ``.cache/bench/oci-<layers>x<size>MiB``) an OCI image layout: N layers of
   uncompressed tar (``application/vnd.oci.image.layer.v1.tar``), each holding one file of random
   bytes, plus a config blob, an OCI image manifest, ``index.json`` (tag ``bench``) and ``oci-layout``.
   Uncompressed on purpose: gzip of random data is slow and would measure the compressor, not the
   registry. skopeo runs with ``--preserve-digests`` (push: the docker transport would otherwise gzip
   every layer on the client; pull: plus ``--dest-oci-accept-uncompressed-layers`` for the same
   reason on the way back), so the bytes on the wire are the layout's bytes and the manifest digest
   is identical end to end.
2. For each repetition and each registry, starts the registry on 127.0.0.1 with a *fresh, empty*
   storage directory (same filesystem for both), so every push really uploads every blob — no
   dedup, no cross-repo mount, no blob already present. The registry's start-up is not timed.
   Then times ``skopeo copy oci:… docker://…`` (push) and ``skopeo copy docker://… oci:…`` (pull),
   checks the pushed digest (``--digestfile``), that the registry serves the manifest byte for byte,
   and that the pulled layout holds the same manifest bytes and blob digests (checks are not timed).
   Registries are interleaved per rep, alternating order (A B, B A, A B, …) to cancel drift.
3. Concurrent pulls: one registry instance each, one push, then ``--clients`` curl processes at once,
   each GETting the manifest and every blob over one keep-alive connection and discarding the
   blobs (curl rather than skopeo: 50 skopeo processes would measure skopeo; curl is C and cheap).
   Every client's manifest is checked against the digest, and every byte count against the sizes.
   Wall time from the first spawn to the last exit; aggregate throughput = bytes / wall time.
   ``--rounds`` rounds, registries alternating.
4. Peak RSS of each registry process tree (sampled ``VmRSS`` every 100 ms plus the kernel's
   ``VmHWM`` read just before stopping), the maximum over all instances.
5. Prints a table (medians; ratio = Dockyard time / distribution time, < 1 means Dockyard is faster)
   and writes everything as JSON under ``.cache/bench/`` (never committed).

The issue's goal is ratio <= 0.8 and Dockyard peak RSS < 150 MB; this script reports, it does not
assert. Fairness notes: Dockyard fsyncs every blob before making it visible (design principle 6);
distribution 2.8's filesystem driver does not fsync. Both log each request to a file (their
defaults). ``--py-spy BIN`` attaches py-spy to every Dockyard instance and writes raw stacks per
phase next to the JSON; profiled runs are slower, so do not quote their timings.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CACHE_DIR,
    REPO_ROOT,
    RssWatcher,
    fmt_table,
    free_port,
    median,
    terminate,
    wait_http,
)

MIB = 1 << 20
LAYER_MT = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
DOCKYARD = "dockyard"
DISTRIBUTION = "distribution"
SKOPEO = "skopeo"


# --------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class Image:
    layout: Path
    manifest_digest: str
    manifest: bytes
    blobs: list[tuple[str, int]]  # (digest, size): config first, then layers

    @property
    def total_bytes(self) -> int:
        return len(self.manifest) + sum(size for _, size in self.blobs)

    @property
    def layer_bytes(self) -> int:
        return sum(size for _, size in self.blobs[1:])


class _HashingSink:
    """A write-only file object that hashes and counts what passes through to ``fh``."""

    def __init__(self, fh: object) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.fh.write(data)  # type: ignore[attr-defined]
        self.sha.update(data)
        self.size += len(data)
        return len(data)


class _RandomSource:
    """``size`` bytes from os.urandom, read in whatever pieces tarfile asks for."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def _put_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    hexd = hashlib.sha256(data).hexdigest()
    (blobs / hexd).write_bytes(data)
    return f"sha256:{hexd}", len(data)


def build_image(layers: int, size_mb: int) -> Image:
    """The OCI layout for ``layers`` x ``size_mb`` MiB, built once and cached (marker: image.json)."""
    layout = CACHE_DIR / f"oci-{layers}x{size_mb}MiB"
    marker = layout / "image.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        manifest = (layout / "blobs" / "sha256" / meta["manifest"].split(":", 1)[1]).read_bytes()
        blobs_meta = [(str(d), int(n)) for d, n in meta["blobs"]]
        return Image(layout, meta["manifest"], manifest, blobs_meta)
    shutil.rmtree(layout, ignore_errors=True)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    started = time.monotonic()
    layer_descs: list[tuple[str, int]] = []
    for i in range(layers):
        tmp = blobs / f".layer{i}.tmp"
        with tmp.open("wb") as fh:
            sink = _HashingSink(fh)
            with tarfile.open(fileobj=sink, mode="w|", copybufsize=MIB) as tar:  # type: ignore[call-overload]
                info = tarfile.TarInfo(f"random-{i}.bin")
                info.size, info.mode, info.mtime = size_mb * MIB, 0o644, 0
                tar.addfile(info, _RandomSource(info.size))
        hexd = sink.sha.hexdigest()
        tmp.rename(blobs / hexd)
        layer_descs.append((f"sha256:{hexd}", sink.size))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layer_descs]},  # uncompressed: same
        "history": [{"created_by": f"bench layer {i}"} for i in range(layers)],
    }
    config_desc = _put_blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MT,
        "config": {"mediaType": CONFIG_MT, "digest": config_desc[0], "size": config_desc[1]},
        "layers": [{"mediaType": LAYER_MT, "digest": d, "size": s} for d, s in layer_descs],
    }
    manifest = json.dumps(manifest_obj, indent=2).encode()
    manifest_digest, manifest_size = _put_blob(blobs, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MANIFEST_MT,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    all_blobs = [config_desc, *layer_descs]
    marker.write_text(json.dumps({"manifest": manifest_digest, "blobs": all_blobs}))
    print(f"built {layout} ({layers} x {size_mb} MiB) in {time.monotonic() - started:.1f}s", flush=True)
    return Image(layout, manifest_digest, manifest, all_blobs)


# --------------------------------------------------------------------------- the registries


@dataclass
class Peaks:
    """Peak RSS per registry, per phase (bytes)."""

    by_phase: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, registry: str, phase: str, value: int) -> None:
        slot = self.by_phase.setdefault(registry, {})
        slot[phase] = max(slot.get(phase, 0), value)

    def overall(self, registry: str) -> int:
        return max(self.by_phase.get(registry, {}).values(), default=0)


@dataclass
class Running:
    kind: str
    port: int
    root: Path
    proc: subprocess.Popen[bytes]
    rss: RssWatcher
    spy: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _clean_env(prefix: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(prefix)}


@contextlib.contextmanager
def registry(
    kind: str, workdir: Path, peaks: Peaks, phase: str, py_spy: str | None, spy_out: Path | None
) -> Iterator[Running]:
    """Start ``kind`` on a free loopback port with a fresh storage dir; stop it and delete the dir."""
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir))
    root = base / "storage"
    root.mkdir()
    log = (base / "server.log").open("wb")
    if kind == DOCKYARD:
        exe = REPO_ROOT / ".venv" / "bin" / "dockyard-registry"
        cmd = [str(exe), "serve", "--root", str(root), "--host", "127.0.0.1", "--port", str(port)]
        # Its own gRPC port and state dir; NATS pointed at a closed port, so events wait in the
        # outbox (as with a dead NATS) and never land in someone else's JetStream.
        cmd += ["--grpc-listen", f"127.0.0.1:{free_port()}", "--state-dir", str(base / "state")]
        cmd += ["--nats-url", f"nats://127.0.0.1:{free_port()}"]
        env = _clean_env("DOCKYARD_")
    else:
        config = base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {root}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        cmd = ["docker-registry", "serve", str(config)]
        env = _clean_env("REGISTRY_")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    running: Running | None = None
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc)
        running = Running(kind, port, root, proc, RssWatcher(proc.pid))
        if py_spy and kind == DOCKYARD and spy_out is not None:
            spy_cmd = [py_spy, "record", "--pid", str(proc.pid), "--idle", "--rate", "200"]
            spy_cmd += ["--format", "raw", "--output", str(spy_out)]
            running.spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # let it attach
        yield running
    finally:
        if running is not None:
            peaks.add(kind, phase, running.rss.stop())
        if running is not None and running.spy is not None:
            running.spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.spy.wait(60)
        terminate(proc)
        log.close()
        if proc.returncode not in (0, -signal.SIGTERM, None):
            print(f"  note: {kind} exited {proc.returncode}; log kept in {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- operations


def _run(cmd: list[str]) -> float:
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True)
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode()[-2000:]}")
    return elapsed


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MIB):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def push(reg: Running, image: Image, repo: str, tag: str, workdir: Path) -> float:
    digestfile = workdir / f"digest-{reg.kind}-{tag}"
    cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--preserve-digests"]
    cmd += ["--dest-tls-verify=false", "--digestfile", str(digestfile)]
    cmd += [f"oci:{image.layout}:bench", f"docker://{reg.host}/{repo}:{tag}"]
    elapsed = _run(cmd)
    pushed = digestfile.read_text().strip()
    digestfile.unlink()
    if pushed != image.manifest_digest:
        raise AssertionError(f"{reg.kind}: pushed digest {pushed} != {image.manifest_digest}")
    req = urllib.request.Request(f"{reg.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_MT})
    with urllib.request.urlopen(req, timeout=30) as resp:
        served, header = resp.read(), resp.headers.get("Docker-Content-Digest")
    if served != image.manifest or header != image.manifest_digest:
        raise AssertionError(f"{reg.kind}: served manifest differs from the pushed one ({header})")
    return elapsed


def pull(reg: Running, image: Image, repo: str, tag: str, workdir: Path) -> float:
    dest = Path(tempfile.mkdtemp(prefix=f"pull-{reg.kind}-", dir=workdir))
    try:
        cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--preserve-digests"]
        cmd += ["--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers"]
        cmd += [f"docker://{reg.host}/{repo}:{tag}", f"oci:{dest}:x"]
        elapsed = _run(cmd)
        index = json.loads((dest / "index.json").read_text())
        got = index["manifests"][0]["digest"]
        blobs = dest / "blobs" / "sha256"
        if got != image.manifest_digest or (blobs / got.split(":")[1]).read_bytes() != image.manifest:
            raise AssertionError(f"{reg.kind}: pulled manifest {got} differs from {image.manifest_digest}")
        for digest, size in image.blobs:
            path = blobs / digest.split(":")[1]
            if path.stat().st_size != size or _sha256_file(path) != digest:
                raise AssertionError(f"{reg.kind}: pulled blob {digest} is wrong")
        return elapsed
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@dataclass
class Concurrent:
    wall_s: float
    bytes: int

    @property
    def mb_s(self) -> float:
        return self.bytes / MIB / self.wall_s


def concurrent_pull(
    reg: Running, image: Image, repo: str, tag: str, clients: int, workdir: Path
) -> Concurrent:
    """``clients`` curl processes at once, each: manifest (kept, checked) + every blob (discarded)."""
    out = Path(tempfile.mkdtemp(prefix=f"conc-{reg.kind}-", dir=workdir))
    try:
        cmds = []
        for i in range(clients):
            cmd = ["curl", "--http1.1", "-sS", "--fail", "-H", f"Accept: {MANIFEST_MT}"]
            cmd += ["-w", "%{size_download}\\n", "-o", str(out / f"m{i}.json")]
            cmd += [f"{reg.url}/v2/{repo}/manifests/{tag}"]
            for digest, _ in image.blobs:
                cmd += ["-o", "/dev/null", f"{reg.url}/v2/{repo}/blobs/{digest}"]
            cmds.append(cmd)
        started = time.monotonic()
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
        results = [p.communicate() for p in procs]
        wall = time.monotonic() - started
        expected = [len(image.manifest), *(size for _, size in image.blobs)]
        total = 0
        for i, (p, (stdout, stderr)) in enumerate(zip(procs, results, strict=True)):
            sizes = [int(x) for x in stdout.split()]
            if p.returncode != 0 or sizes != expected:
                raise AssertionError(f"{reg.kind}: client {i} rc={p.returncode} sizes={sizes} {stderr!r}")
            if _sha256_file(out / f"m{i}.json") != image.manifest_digest:
                raise AssertionError(f"{reg.kind}: client {i} got a different manifest")
            total += sum(sizes)
        return Concurrent(wall, total)
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------------- main


def _versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    git = ["git", "-C", str(REPO_ROOT)]
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "services/registry"], capture_output=True, text=True
    ).stdout
    return {
        "skopeo": first_line([SKOPEO, "--version"]),
        "distribution": first_line(["docker-registry", "--version"]),
        "curl": first_line(["curl", "--version"]),
        "python": sys.version.split()[0],
        "git_head": first_line([*git, "rev-parse", "HEAD"]),
        "registry_worktree_dirty": str(bool(dirty.strip())),
        "cpus": str(os.cpu_count()),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--size-mb", type=int, default=100, help="MiB of random data per layer (default 100)")
    p.add_argument("--layers", type=int, default=3, help="number of layers (default 3)")
    p.add_argument("--reps", type=int, default=5, help="push/pull repetitions per registry (default 5)")
    p.add_argument("--clients", type=int, default=50, help="concurrent pull clients (default 50)")
    p.add_argument("--rounds", type=int, default=2, help="concurrent-pull rounds per registry (default 2)")
    p.add_argument("--quick", action="store_true", help="3 x 10 MiB, 2 reps, 1 round: a smoke check")
    p.add_argument("--workdir", type=Path, default=CACHE_DIR, help="scratch + results (default .cache/bench)")
    p.add_argument("--py-spy", metavar="BIN", help="attach this py-spy to Dockyard; timings are then skewed")
    args = p.parse_args(argv)
    if args.quick:
        args.size_mb, args.layers, args.reps, args.rounds = 10, 3, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in (SKOPEO, "docker-registry", "curl"):
        if shutil.which(tool) is None:
            print(f"registry_bench: {tool} not found on PATH", file=sys.stderr)
            return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    scratch = Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=args.workdir))
    spy_dir = args.workdir / f"pyspy-{stamp}" if args.py_spy else None
    if spy_dir is not None:
        spy_dir.mkdir()
    started = time.monotonic()
    image = build_image(args.layers, args.size_mb)
    mb = image.layer_bytes / MIB
    print(
        f"image {image.manifest_digest} ({mb:.0f} MiB in {args.layers} layers), {args.reps} reps", flush=True
    )

    peaks = Peaks()
    times: dict[str, dict[str, list[float]]] = {k: {"push": [], "pull": []} for k in (DOCKYARD, DISTRIBUTION)}
    conc: dict[str, list[Concurrent]] = {DOCKYARD: [], DISTRIBUTION: []}

    def spy_file(name: str) -> Path | None:
        return spy_dir / f"{name}.txt" if spy_dir is not None else None

    try:
        for rep in range(args.reps):
            order = [DOCKYARD, DISTRIBUTION] if rep % 2 == 0 else [DISTRIBUTION, DOCKYARD]
            for kind in order:
                with registry(kind, scratch, peaks, "push_pull", args.py_spy, spy_file(f"rep{rep}")) as reg:
                    t_push = push(reg, image, "bench/img", f"r{rep}", scratch)
                    t_pull = pull(reg, image, "bench/img", f"r{rep}", scratch)
                times[kind]["push"].append(t_push)
                times[kind]["pull"].append(t_pull)
                print(
                    f"  rep {rep + 1}/{args.reps} {kind:12s} push {t_push:6.2f}s  pull {t_pull:6.2f}s",
                    flush=True,
                )

        with contextlib.ExitStack() as stack:
            regs = {
                kind: stack.enter_context(
                    registry(kind, scratch, peaks, "concurrent", args.py_spy, spy_file("concurrent"))
                )
                for kind in (DOCKYARD, DISTRIBUTION)
            }
            for reg in regs.values():
                push(reg, image, "bench/conc", "latest", scratch)
            for rnd in range(args.rounds):
                order = [DOCKYARD, DISTRIBUTION] if rnd % 2 == 0 else [DISTRIBUTION, DOCKYARD]
                for kind in order:
                    c = concurrent_pull(regs[kind], image, "bench/conc", "latest", args.clients, scratch)
                    conc[kind].append(c)
                    print(
                        f"  {args.clients} clients round {rnd + 1}/{args.rounds} {kind:12s} "
                        f"{c.wall_s:6.2f}s  {c.mb_s:8.0f} MiB/s",
                        flush=True,
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    dy, di = DOCKYARD, DISTRIBUTION
    rows: list[list[str]] = []

    def row(label: str, a: float, b: float) -> None:
        rows.append([label, f"{a:.2f}", f"{b:.2f}", f"{a / b:.2f}"])

    size = f"{args.layers}x{args.size_mb} MiB"
    row(f"push {size}", median(times[dy]["push"]), median(times[di]["push"]))
    row(f"pull {size}", median(times[dy]["pull"]), median(times[di]["pull"]))
    conc_med = {k: median([c.wall_s for c in conc[k]]) for k in conc}
    row(f"{args.clients} concurrent pulls (wall)", conc_med[dy], conc_med[di])
    thr = {k: median([c.mb_s for c in conc[k]]) for k in conc}
    thr_push = {k: mb / median(times[k]["push"]) for k in times}
    thr_pull = {k: mb / median(times[k]["pull"]) for k in times}
    rss = {k: peaks.overall(k) / 1e6 for k in (dy, di)}
    header = ["operation", "Dockyard median (s)", "distribution median (s)", "ratio Dy/dist"]
    extra_header = ["figure", "Dockyard", "distribution"]
    extra = [
        ["push throughput (MiB/s)", f"{thr_push[dy]:.0f}", f"{thr_push[di]:.0f}"],
        ["pull throughput (MiB/s)", f"{thr_pull[dy]:.0f}", f"{thr_pull[di]:.0f}"],
        [f"{args.clients}-client aggregate (MiB/s)", f"{thr[dy]:.0f}", f"{thr[di]:.0f}"],
        [
            "peak RSS push/pull (MB)",
            *(f"{peaks.by_phase[k].get('push_pull', 0) / 1e6:.0f}" for k in (dy, di)),
        ],
        [
            "peak RSS concurrent (MB)",
            *(f"{peaks.by_phase[k].get('concurrent', 0) / 1e6:.0f}" for k in (dy, di)),
        ],
        ["peak RSS overall (MB)", f"{rss[dy]:.0f}", f"{rss[di]:.0f}"],
    ]
    print()
    print(fmt_table(header, rows))
    print()
    print(fmt_table(extra_header, extra))
    ratios = [float(r[3]) for r in rows]
    print(
        f"\ngoal (issue): time ratio <= 0.8 -> {'met' if max(ratios) <= 0.8 else 'NOT met'} "
        f"(worst {max(ratios):.2f}); Dockyard peak RSS < 150 MB -> "
        f"{'met' if rss[dy] < 150 else 'NOT met'} ({rss[dy]:.0f} MB)"
    )

    result = {
        "started": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": _versions(),
        "image": {"manifest": image.manifest_digest, "blobs": image.blobs, "layer_mib": mb},
        "push_pull_s": times,
        "concurrent": {k: [{"wall_s": c.wall_s, "bytes": c.bytes} for c in v] for k, v in conc.items()},
        "peak_rss_bytes": peaks.by_phase,
        "table": {"header": header, "rows": rows, "extra": extra},
    }
    out = args.workdir / f"registry-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nresults: {out}  (total {result['duration_s']}s)")
    if spy_dir is not None:
        print(f"py-spy raw stacks: {spy_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
