"""A bounded soak of Dockyard's registry: many clients pushing, pulling, deleting and collecting at
once for N minutes, with the registry's memory and open descriptors sampled throughout.

    .venv/bin/python bench/soak.py                     # 10 minutes, 16 clients (make soak)
    SOAK_MINUTES=1 .venv/bin/python bench/soak.py      # a short one
    .venv/bin/python bench/soak.py --minutes 2 --clients 32

What each client does, in a loop, in its own repository ``soak/c<i>`` (so its checks cannot be
broken by another client's legitimate deletes):

* push an image: 1-3 random layers (4 KiB - 2 MiB, monolithic, chunked in 3 PATCHes, or a
  cross-repository mount from another client's repository, falling back to an upload when that
  blob was collected meanwhile), a config, the manifest by tag;
* pull it back (manifest by tag, every blob) and check every digest;
* sometimes: list tags and the catalog, a ranged GET, delete its oldest manifest, leave an upload
  session unfinished (the registry's sweep expires it), or ask for GC through gRPC.

The registry runs with ``--upload-expiry 20`` (sweeps every 5 s, racing new uploads) and
``--gc-grace 30`` (GC races pushes of manifests whose layers were just uploaded). Every answer
that is not the expected status, and every digest mismatch, is an error. The registry's RSS and
open descriptors are sampled every 5 s; "flat" means the last third's median is within 15 % (RSS)
/ 32 descriptors of the median of the first third after a one-minute warm-up. Exit status 0 only
with zero errors and both flat. Results also go to ``.cache/bench/soak-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE_DIR, REPO_ROOT, free_port, terminate, wait_http

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KIB = 1 << 10


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Stats:
    ops: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    bytes_pushed: int = 0
    bytes_pulled: int = 0

    def op(self, name: str) -> None:
        self.ops[name] = self.ops.get(name, 0) + 1

    def error(self, what: str) -> None:
        self.errors.append(what)
        if len(self.errors) <= 20:
            print(f"  ERROR {what}", flush=True)


class Client:
    def __init__(self, index: int, url: str, clients: int, stats: Stats, rng: random.Random) -> None:
        self.repo = f"soak/c{index}"
        self.url = url
        self.clients = clients
        self.stats = stats
        self.rng = rng
        self.pushed: list[tuple[str, str, dict[str, int]]] = []  # (tag, manifest digest, blobs)
        self.everyone: list[Client] = []
        self.n = 0

    async def expect(self, resp: aiohttp.ClientResponse, *statuses: int, what: str) -> bool:
        if resp.status in statuses:
            return True
        body = (await resp.read())[:200]
        self.stats.error(f"{what}: {resp.status} {body!r}")
        return False

    async def upload(self, s: aiohttp.ClientSession, data: bytes) -> None:
        d = sha(data)
        how = self.rng.choice(["monolithic", "chunked", "mount"])
        if how == "mount":  # a blob no one has: the registry must fall back to an upload session
            async with s.post(f"{self.url}/v2/{self.repo}/blobs/uploads/?mount={d}") as r:
                if not await self.expect(r, 202, what="mount of a new blob"):
                    return
                loc = r.headers["Location"]
            async with s.put(f"{self.url}{loc}?digest={d}", data=data) as put:
                await self.expect(put, 201, what="upload after mount fallback")
            self.stats.op("push-mount-fallback")
            self.stats.bytes_pushed += len(data)
            return
        if how == "monolithic":
            async with s.post(f"{self.url}/v2/{self.repo}/blobs/uploads/?digest={d}", data=data) as r:
                await self.expect(r, 201, what="monolithic push")
        else:
            async with s.post(f"{self.url}/v2/{self.repo}/blobs/uploads/") as r:
                if not await self.expect(r, 202, what="start upload"):
                    return
                loc = r.headers["Location"]
            third = max(1, len(data) // 3)
            for start in range(0, len(data), third):
                piece = data[start : start + third]
                headers = {"Content-Range": f"{start}-{start + len(piece) - 1}"}
                async with s.patch(f"{self.url}{loc}", data=piece, headers=headers) as r:
                    if not await self.expect(r, 202, what="patch"):
                        return
                    loc = r.headers["Location"]
            async with s.put(f"{self.url}{loc}?digest={d}") as r:
                await self.expect(r, 201, what="finish chunked")
        self.stats.op(f"push-{how}")
        self.stats.bytes_pushed += len(data)

    async def push_image(self, s: aiohttp.ClientSession) -> None:
        self.n += 1
        layers = [os.urandom(self.rng.choice([4 * KIB, 64 * KIB, 512 * KIB, 2048 * KIB])) for _ in range(3)]
        layers = layers[: self.rng.randint(1, 3)]
        config = json.dumps({"client": self.repo, "n": self.n, "nonce": self.rng.random()}).encode()
        for blob in [*layers, config]:
            await self.upload(s, blob)
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(x), "size": len(x)}
                for x in layers
            ],
        }
        body = json.dumps(doc).encode()
        tag = f"t{self.n}"
        headers = {"Content-Type": OCI_MANIFEST}
        async with s.put(f"{self.url}/v2/{self.repo}/manifests/{tag}", data=body, headers=headers) as r:
            if not await self.expect(r, 201, what="manifest push"):
                return
        blobs = {sha(x): len(x) for x in [*layers, config]}
        self.pushed.append((tag, sha(body), blobs))
        self.stats.op("image-pushed")

    async def pull_image(self, s: aiohttp.ClientSession) -> None:
        if not self.pushed:
            return
        tag, digest, blobs = self.rng.choice(self.pushed)
        headers = {"Accept": OCI_MANIFEST}
        async with s.get(f"{self.url}/v2/{self.repo}/manifests/{tag}", headers=headers) as r:
            if not await self.expect(r, 200, what="manifest pull"):
                return
            if sha(await r.read()) != digest:
                self.stats.error(f"manifest {self.repo}:{tag} digest mismatch")
        for d, size in blobs.items():
            async with s.get(f"{self.url}/v2/{self.repo}/blobs/{d}") as r:
                if not await self.expect(r, 200, what=f"blob pull {d[:19]}"):
                    continue
                data = await r.read()
                if sha(data) != d or len(data) != size:
                    self.stats.error(f"blob {d} content mismatch")
                self.stats.bytes_pulled += len(data)
        self.stats.op("image-pulled")

    async def mount_from_another(self, s: aiohttp.ClientSession) -> None:
        """Mount a layer of another client's image: 201, or 202 when it was deleted and collected."""
        donor = self.rng.choice(self.everyone)
        if not donor.pushed or donor is self:
            return
        _, _, blobs = self.rng.choice(donor.pushed)
        d = self.rng.choice(list(blobs))
        async with s.post(f"{self.url}/v2/{self.repo}/blobs/uploads/?mount={d}&from={donor.repo}") as r:
            if not await self.expect(r, 201, 202, what="cross-repository mount"):
                return
            if r.status == 202:  # collected meanwhile: cancel the session it opened
                async with s.delete(f"{self.url}{r.headers['Location']}") as cancel:
                    await self.expect(cancel, 204, what="cancel after mount fallback")
                self.stats.op("mount-fell-back")
                return
        async with s.head(f"{self.url}/v2/{self.repo}/blobs/{d}") as r:
            await self.expect(r, 200, what="HEAD of a mounted blob")
        self.stats.op("mount")

    async def extras(self, s: aiohttp.ClientSession) -> None:
        roll = self.rng.random()
        if roll < 0.15:
            await self.mount_from_another(s)
        elif roll < 0.3:
            async with s.get(f"{self.url}/v2/{self.repo}/tags/list?n=5") as r:
                await self.expect(r, 200, 404, what="tags list")
            async with s.get(f"{self.url}/v2/_catalog?n=10") as r:
                await self.expect(r, 200, what="catalog")
            self.stats.op("listings")
        elif roll < 0.45 and len(self.pushed) > 3:
            _, digest, _ = self.pushed.pop(0)
            async with s.delete(f"{self.url}/v2/{self.repo}/manifests/{digest}") as r:
                await self.expect(r, 202, what="manifest delete")
            self.stats.op("manifest-deleted")
        elif roll < 0.55:
            async with s.post(f"{self.url}/v2/{self.repo}/blobs/uploads/") as r:  # abandoned: swept later
                await self.expect(r, 202, what="abandoned upload")
            self.stats.op("upload-abandoned")
        elif roll < 0.65 and self.pushed:
            _, _, blobs = self.rng.choice(self.pushed)
            d, size = next(iter(blobs.items()))
            async with s.get(f"{self.url}/v2/{self.repo}/blobs/{d}", headers={"Range": "bytes=0-0"}) as r:
                await self.expect(r, 206 if size > 1 else 200, what="ranged get")
                await r.read()
            self.stats.op("ranged-get")

    async def run(self, deadline: float) -> None:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            while time.monotonic() < deadline:
                try:
                    await self.push_image(s)
                    await self.pull_image(s)
                    await self.extras(s)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.stats.error(f"{self.repo}: {type(exc).__name__}: {exc}")


async def gc_loop(grpc_address: str, deadline: float, stats: Stats, period: float) -> None:
    import grpc

    from dockyard.api.registry.v1 import registry_pb2, registry_pb2_grpc

    async with grpc.aio.insecure_channel(grpc_address) as ch:
        stub = registry_pb2_grpc.RegistryAdminStub(ch)
        while time.monotonic() + period < deadline:
            await asyncio.sleep(period)
            try:
                reply = await stub.GarbageCollect(registry_pb2.GarbageCollectRequest(), timeout=120)
                stats.op("gc")
                stats.ops["gc-swept-blobs"] = stats.ops.get("gc-swept-blobs", 0) + reply.blobs_swept
            except grpc.RpcError as exc:
                stats.error(f"gc: {exc.code().name} {exc.details()}")


def sample(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def sampler(pid: int, deadline: float, out: list[tuple[float, int, int]], started: float) -> None:
    while time.monotonic() < deadline:
        rss, fds = sample(pid)
        out.append((round(time.monotonic() - started, 1), rss, fds))
        await asyncio.sleep(5)


def flat(values: list[int], warmup: int, tolerance: float, absolute: int = 0) -> tuple[bool, int, int]:
    body = values[warmup:] if len(values) > warmup + 6 else values
    third = max(1, len(body) // 3)
    first, last = int(statistics.median(body[:third])), int(statistics.median(body[-third:]))
    return last <= first * (1 + tolerance) + absolute, first, last


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    p.add_argument("--clients", type=int, default=int(os.environ.get("SOAK_CLIENTS", "16")))
    p.add_argument("--gc-every", type=float, default=20.0, help="seconds between GC calls (default 20)")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=CACHE_DIR))
    port, grpc_port = free_port(), free_port()
    argv_ = [
        str(REPO_ROOT / ".venv/bin/dockyard-registry"), "serve",
        "--root", str(work / "root"), "--host", "127.0.0.1", "--port", str(port),
        "--grpc-listen", f"127.0.0.1:{grpc_port}", "--state-dir", str(work / "state"),
        "--nats-url", f"nats://127.0.0.1:{free_port()}",
        "--upload-expiry", "20", "--gc-grace", "30",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    log_path = work / "registry.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv_, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    stats = Stats()
    samples: list[tuple[float, int, int]] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc)
        print(
            f"soak: {args.minutes:g} min, {args.clients} clients, registry pid {proc.pid}, {work}", flush=True
        )
        started = time.monotonic()
        deadline = started + args.minutes * 60

        async def everything() -> None:
            rng = random.Random(args.seed)
            clients = [
                Client(i, f"http://127.0.0.1:{port}", args.clients, stats, random.Random(rng.random()))
                for i in range(args.clients)
            ]
            for c in clients:
                c.everyone = clients
            await asyncio.gather(
                sampler(proc.pid, deadline, samples, started),
                gc_loop(f"127.0.0.1:{grpc_port}", deadline, stats, args.gc_every),
                *(c.run(deadline) for c in clients),
            )

        asyncio.run(everything())
        alive = proc.poll() is None
    finally:
        terminate(proc)
        shutil.rmtree(work / "root", ignore_errors=True)  # gigabytes of blobs; the log stays
    warmup = 12 if args.minutes >= 3 else 2  # samples are 5 s apart: one minute
    rss_ok, rss_first, rss_last = flat([s[1] for s in samples], warmup, 0.15)
    fds_ok, fds_first, fds_last = flat([s[2] for s in samples], warmup, 0.0, 32)
    five_hundreds = sum(
        1 for line in log_path.read_text(errors="replace").splitlines() if '"status": 5' in line
    )
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "clients": args.clients,
        "ops": dict(sorted(stats.ops.items())),
        "errors": len(stats.errors),
        "first_errors": stats.errors[:20],
        "server_5xx_logged": five_hundreds,
        "mib_pushed": round(stats.bytes_pushed / (1 << 20), 1),
        "mib_pulled": round(stats.bytes_pulled / (1 << 20), 1),
        "rss_kb": {"first_third_median": rss_first, "last_third_median": rss_last,
                   "max": max(s[1] for s in samples), "flat": rss_ok},
        "fds": {"first_third_median": fds_first, "last_third_median": fds_last,
                "max": max(s[2] for s in samples), "flat": fds_ok},
        "registry_alive_at_end": alive,
        "samples": samples,
    }  # fmt: skip
    out = CACHE_DIR / f"soak-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    ok = not stats.errors and rss_ok and fds_ok and alive and not five_hundreds
    print(f"soak: {'OK' if ok else 'FAILED'} (details in {out}; registry log {log_path})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
