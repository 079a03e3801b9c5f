"""Helpers shared by the benchmarks in ``bench/`` (not a test module, not part of any service).

Everything here is synchronous and stdlib-only so that a benchmark's own overhead stays small and
obvious: a free loopback port, waiting for an HTTP endpoint, a background poller of a process
tree's resident memory (``/proc``), medians and a plain-text table.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache" / "bench"  # gitignored (/.cache/)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (tiny race, fine for a benchmark)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers (any HTTP status < 500); fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a snapshot)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssWatcher:
    """Peak resident memory of a process tree, in bytes.

    A thread samples the sum of ``VmRSS`` over the tree every ``interval`` seconds; ``stop()``
    (call it *before* the process exits) also reads each process's kernel-kept high-water mark
    ``VmHWM``, so a spike shorter than the sampling interval is not missed. The peak reported is
    the larger of the sampled tree sum and the sum of the per-process high-water marks.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.sampled_peak_kb = 0
        self.hwm_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_status_kb(p, "VmRSS") for p in process_tree(self.pid))
            self.sampled_peak_kb = max(self.sampled_peak_kb, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.hwm_kb = sum(_status_kb(p, "VmHWM") for p in process_tree(self.pid))
        return self.peak_bytes

    @property
    def peak_bytes(self) -> int:
        return max(self.sampled_peak_kb, self.hwm_kb) * 1024


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process (by its pid), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def fmt_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain, aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths).rstrip()
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def save_results(name: str, stamp: str, result: Any) -> Path:
    """``result`` as ``.cache/bench/<name>.json`` (the latest) and ``<name>-<stamp>.json`` (kept)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    latest = CACHE_DIR / f"{name}.json"
    latest.write_text(text)
    (CACHE_DIR / f"{name}-{stamp}.json").write_text(text)
    return latest
