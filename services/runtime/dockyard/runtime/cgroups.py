"""Resource limits, pause and stats through the cgroup subtree delegated to the platform's user.

Decided once at start (:func:`dockyard.core.cgroups.probe`, a :class:`Delegation`): when the user's
subtree (``dockyard/<user>``, or the older shared ``dockyard``) is usable every container gets
``linux.cgroupsPath = /dockyard/<user>/<id>`` — runc makes that cgroup in
every hierarchy, writes ``linux.resources`` into it, and ``runc pause``/``resume`` use its freezer —
and the limit flags its controllers carry are accepted. Otherwise containers run without a cgroup
of their own (as before) and any limit flag is refused at create with one line saying what is
missing: a limit is never silently dropped.

What a container's cgroup holds (v1, <s> = dockyard/<user>; v2 has the same in one directory,
named as v2 names them)::

    /sys/fs/cgroup/memory/<s>/<id>/   memory.limit_in_bytes  memory.memsw.limit_in_bytes
                                      memory.usage_in_bytes  memory.stat  memory.oom_control
    /sys/fs/cgroup/cpu/<s>/<id>/      cpu.cfs_quota_us  cpu.cfs_period_us  cpu.shares
    /sys/fs/cgroup/cpuacct/<s>/<id>/  cpuacct.usage (ns of CPU, all tasks)
    /sys/fs/cgroup/pids/<s>/<id>/     pids.max  pids.current
    /sys/fs/cgroup/blkio/<s>/<id>/    blkio.throttle.io_service_bytes_recursive
    /sys/fs/cgroup/freezer/<s>/<id>/  freezer.state

``runc delete`` removes these; :meth:`Cgroups.remove` rmdirs whatever a failed delete left.
Reading a sample costs ~10 small file reads (~0.1 ms); nothing here blocks on anything but procfs
and cgroupfs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dockyard.core.cgroups import DEFAULT_PIDS_LIMIT, Delegation
from dockyard.core.errors import FailedPrecondition, InvalidArgument

#: docker's CFS period for --cpus (100 ms).
CPU_PERIOD_US = 100_000
#: docker's floor for --memory.
MIN_MEMORY = 6 * 1024 * 1024
#: cgroup v1's cpu.shares range.
MIN_SHARES, MAX_SHARES = 2, 262_144
#: v1 reports "no limit" as a huge page-aligned number; anything above this means unlimited.
UNLIMITED = 1 << 62


@dataclass(frozen=True, slots=True)
class Limits:
    """A container's resource limits, docker's way. 0 means "not set" everywhere.

    ``memory_swap`` is memory + swap (docker's and OCI's meaning); -1 is unlimited swap; unset with
    ``memory`` set means twice ``memory``, as docker does. ``nano_cpus``: 10⁹ per CPU (``--cpus``).
    ``pids_limit`` -1 means unlimited (docker's ``--pids-limit 0`` or ``-1``); unset (0), the
    container gets :data:`DEFAULT_PIDS_LIMIT` where the pids controller is delegated.
    """

    memory: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    pids_limit: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Limits:
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in (d or {}).items() if k in known})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def flags(self) -> list[str]:
        """The CLI flags that set something, for messages."""
        named = (
            ("--memory", self.memory),
            ("--memory-swap", self.memory_swap),
            ("--cpus", self.nano_cpus),
            ("--cpu-shares", self.cpu_shares),
            ("--pids-limit", self.pids_limit),
        )
        return [flag for flag, value in named if value]

    def validate(self, cpus: int | None = None) -> Limits:
        """Docker's checks, each failure one line (InvalidArgument). Returns self."""
        cpus = cpus or os.cpu_count() or 1
        if self.memory < 0 or (0 < self.memory < MIN_MEMORY):
            raise InvalidArgument("--memory: the minimum memory limit is 6MiB")
        if self.memory_swap < -1:
            raise InvalidArgument("--memory-swap: must be a size or -1 (unlimited)")
        if self.memory_swap > 0 and not self.memory:
            raise InvalidArgument("--memory-swap needs --memory too (it is memory plus swap)")
        if self.memory_swap > 0 and self.memory_swap < self.memory:
            raise InvalidArgument("--memory-swap must be at least --memory (it is memory plus swap)")
        if self.nano_cpus < 0 or self.nano_cpus > cpus * 10**9:
            raise InvalidArgument(f"--cpus: range is 0.01 to {cpus}.00 (this node has {cpus} CPUs)")
        if 0 < self.nano_cpus < 10**7:
            raise InvalidArgument(f"--cpus: range is 0.01 to {cpus}.00 (this node has {cpus} CPUs)")
        if self.cpu_shares and not (MIN_SHARES <= self.cpu_shares <= MAX_SHARES):
            raise InvalidArgument(f"--cpu-shares: range is {MIN_SHARES} to {MAX_SHARES}")
        if self.pids_limit < -1:
            raise InvalidArgument("--pids-limit: must be positive, or 0 / -1 for unlimited")
        return self

    def updated(self, changes: Mapping[str, int]) -> Limits:
        """These limits with ``changes`` (field → new value) applied. An unset swap stays "twice
        the memory" of the new limit (it is computed when the resources are written)."""
        return replace(self, **{k: int(v) for k, v in changes.items()})


def oci_resources(limits: Limits, *, swap_accounting: bool, lifting: bool = False) -> dict[str, Any]:
    """``linux.resources`` for ``limits``. With ``lifting`` (update), unset fields are written as
    "unlimited" so an update can take a limit away; at create they are left out."""
    out: dict[str, Any] = {}
    memory: dict[str, int] = {}
    if limits.memory:
        memory["limit"] = limits.memory
        if swap_accounting:
            memory["swap"] = limits.memory_swap or 2 * limits.memory
    elif lifting:
        memory["limit"] = -1
        if swap_accounting:
            memory["swap"] = -1
    if memory:
        out["memory"] = memory
    cpu: dict[str, int] = {}
    if limits.nano_cpus:
        cpu["quota"] = limits.nano_cpus * CPU_PERIOD_US // 10**9
        cpu["period"] = CPU_PERIOD_US
    elif lifting:
        cpu["quota"] = -1
        cpu["period"] = CPU_PERIOD_US
    if limits.cpu_shares:
        cpu["shares"] = limits.cpu_shares
    elif lifting:
        cpu["shares"] = 1024
    if cpu:
        out["cpu"] = cpu
    if limits.pids_limit:
        out["pids"] = {"limit": limits.pids_limit}
    elif lifting:
        out["pids"] = {"limit": -1}
    return out


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a container's counters (cumulative ones are totals since it started)."""

    cpu_ns: int = 0
    memory_usage: int = 0
    memory_limit: int = 0
    pids: int = 0
    pids_limit: int = 0
    block_read: int = 0
    block_write: int = 0
    net_rx: int = 0
    net_tx: int = 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(text: str, default: int = 0) -> int:
    text = text.strip()
    if text == "max":
        return -1
    try:
        return int(text)
    except ValueError:
        return default


def _keyed(text: str) -> dict[str, int]:
    """ "key value" lines (memory.stat, memory.oom_control, memory.events, cpu.stat)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


def host_memory() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def net_dev(pid: int) -> tuple[int, int]:
    """(rx, tx) bytes over every interface but lo of ``pid``'s network namespace."""
    rx = tx = 0
    for line in _read(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
        name, _, rest = line.partition(":")
        cols = rest.split()
        if name.strip() == "lo" or len(cols) < 9:
            continue
        rx += int(cols[0])
        tx += int(cols[8])
    return rx, tx


class Cgroups:
    """The per-container side of a :class:`Delegation`: paths, resources, OOM, samples, clean-up."""

    def __init__(self, delegation: Delegation) -> None:
        self.delegation = delegation

    @property
    def usable(self) -> bool:
        return self.delegation.usable

    @property
    def v2(self) -> bool:
        return self.delegation.mode == "v2"

    def cgroups_path(self, cid: str) -> str:
        """The container's ``linux.cgroupsPath``, "" when it gets no cgroup."""
        return f"/{self.delegation.subtree}/{cid}" if self.usable else ""

    def check(self, limits: Limits) -> None:
        """InvalidArgument for a bad value; FailedPrecondition (one line naming what is missing)
        unless this node can enforce every limit set in ``limits``."""
        limits.validate()
        self.require(limits)

    def require(self, limits: Limits) -> None:
        """FailedPrecondition unless the limits set in ``limits`` are enforceable (-1 lifts a pids
        limit: nothing to enforce)."""
        flags = [f for f in limits.flags() if not (f == "--pids-limit" and limits.pids_limit == -1)]
        why = self.delegation.missing(flags)
        if why:
            raise FailedPrecondition(why)

    @property
    def default_pids_limit(self) -> int:
        """The pids limit a container gets when it sets none; 0 where none can be enforced."""
        return DEFAULT_PIDS_LIMIT if self.delegation.missing(["--pids-limit"]) is None else 0

    def resources(self, limits: Limits, *, lifting: bool = False) -> dict[str, Any]:
        if not limits.pids_limit and self.default_pids_limit:
            limits = replace(limits, pids_limit=self.default_pids_limit)
        return oci_resources(limits, swap_accounting=self.delegation.has_swap_accounting, lifting=lifting)

    def _dir(self, controller: str, cid: str) -> Path | None:
        base = self.delegation.paths.get(controller)
        return None if base is None else base / cid

    def oom_killed(self, cid: str) -> bool:
        """Whether the kernel's OOM killer ended a process of the container's cgroup.

        Read before ``runc delete`` removes the cgroup (conmon's own ``oom`` file is the other source).
        """
        d = self._dir("memory", cid)
        if d is None:
            return False
        if self.v2:
            return _keyed(_read(d / "memory.events")).get("oom_kill", 0) > 0
        return _keyed(_read(d / "memory.oom_control")).get("oom_kill", 0) > 0

    def remove(self, cid: str) -> None:
        """rmdir the container's cgroup in every hierarchy (what ``runc delete`` left, if anything)."""
        for base in set(self.delegation.paths.values()):
            with contextlib.suppress(OSError):
                (base / cid).rmdir()

    def sample(self, cid: str, pid: int) -> Sample | None:
        """The container's counters, None when it has no cgroup (see :func:`proc_sample`)."""
        if not self.usable:
            return None
        rx, tx = net_dev(pid) if pid else (0, 0)
        total = host_memory()
        if self.v2:
            d = self.delegation.paths["freezer"] / cid
            stat = _keyed(_read(d / "memory.stat"))
            usage = _int(_read(d / "memory.current")) - stat.get("inactive_file", 0)
            limit = _int(_read(d / "memory.max"), -1)
            rd = wr = 0
            for line in _read(d / "io.stat").splitlines():
                for kv in line.split()[1:]:
                    k, _, v = kv.partition("=")
                    rd += int(v) if k == "rbytes" else 0
                    wr += int(v) if k == "wbytes" else 0
            return Sample(
                cpu_ns=_keyed(_read(d / "cpu.stat")).get("usage_usec", 0) * 1000,
                memory_usage=max(usage, 0),
                memory_limit=total if limit < 0 else min(limit, total or limit),
                pids=_int(_read(d / "pids.current")),
                pids_limit=max(_int(_read(d / "pids.max")), 0),
                block_read=rd,
                block_write=wr,
                net_rx=rx,
                net_tx=tx,
            )
        mem = self._dir("memory", cid)
        cpuacct = self._dir("cpuacct", cid)
        pids = self._dir("pids", cid)
        blkio = self._dir("blkio", cid)
        usage = limit = 0
        if mem is not None:
            stat = _keyed(_read(mem / "memory.stat"))
            usage = _int(_read(mem / "memory.usage_in_bytes")) - stat.get("total_inactive_file", 0)
            limit = _int(_read(mem / "memory.limit_in_bytes"))
        rd = wr = 0
        if blkio is not None:
            for line in _read(blkio / "blkio.throttle.io_service_bytes_recursive").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    rd += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    wr += int(parts[2])
        return Sample(
            cpu_ns=_int(_read(cpuacct / "cpuacct.usage")) if cpuacct is not None else 0,
            memory_usage=max(usage, 0),
            memory_limit=total if not limit or limit >= UNLIMITED else min(limit, total or limit),
            pids=_int(_read(pids / "pids.current")) if pids is not None else 0,
            pids_limit=max(_int(_read(pids / "pids.max")), 0) if pids is not None else 0,
            block_read=rd,
            block_write=wr,
            net_rx=rx,
            net_tx=tx,
        )


def proc_sample(members: list[str], pid: int) -> Sample:
    """A container's counters from /proc alone (no cgroup): CPU time and RSS summed over ``members``
    (the pids of its pid namespace). Coarser (clock ticks; shared pages counted per process)."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0
    for member in members:
        stat = _read(Path(f"/proc/{member}/stat"))
        tail = stat.rpartition(")")[2].split()
        if len(tail) > 13:
            cpu += (int(tail[11]) + int(tail[12])) * 10**9 // ticks
        statm = _read(Path(f"/proc/{member}/statm")).split()
        if len(statm) > 1:
            rss += int(statm[1]) * page
    rx, tx = net_dev(pid) if pid else (0, 0)
    return Sample(
        cpu_ns=cpu, memory_usage=rss, memory_limit=host_memory(), pids=len(members), net_rx=rx, net_tx=tx
    )
