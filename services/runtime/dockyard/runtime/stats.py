"""``docker stats``: periodic samples of containers' CPU, memory, network, block I/O and pids.

Counters come from the container's cgroup (:meth:`Cgroups.sample`) and its network namespace
(``/proc/<pid>/net/dev``); a container without a cgroup (a node with none delegated) is read from
/proc instead (:func:`proc_sample`: CPU and RSS of its pid namespace's processes, no block I/O).
CPU percent is the CPU time used between two samples over the wall time between them, times 100 (so
two busy cores read 200 %, as docker shows it). The first report therefore comes one interval
after the call; then one per interval while streaming. Cost per container and tick: ~10 small
file reads, done off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from dockyard.core.errors import NotFound
from dockyard.runtime.cgroups import Sample, proc_sample
from dockyard.runtime.containers import ContainerManager
from dockyard.runtime.records import ContainerRecord, State, now, pid_namespace_members

#: Seconds between samples (docker's).
INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """One container at one moment."""

    id: str
    name: str
    state: State
    read: str  # ISO time of the reading
    cpu_percent: float = 0.0
    sample: Sample = field(default_factory=Sample)
    from_cgroup: bool = False

    @property
    def memory_percent(self) -> float:
        s = self.sample
        return 100.0 * s.memory_usage / s.memory_limit if s.memory_limit else 0.0


def read_sample(manager: ContainerManager, record: ContainerRecord) -> tuple[Sample, bool]:
    """(counters, from a cgroup?) of one container; zeros unless it runs. Blocking (file reads)."""
    if record.state not in (State.RUNNING, State.PAUSED) or not record.pid:
        return Sample(), False
    sample = manager.cgroups.sample(record.id, record.pid)
    if sample is not None:
        return sample, True
    return proc_sample(pid_namespace_members(record.pid), record.pid), False


def _targets(manager: ContainerManager, refs: Sequence[str]) -> list[ContainerRecord]:
    if not refs:
        return manager.list_containers()
    found = []
    for ref in refs:
        try:
            found.append(manager.get(ref))
        except NotFound:
            continue  # removed since the stream began
    return found


async def stream_stats(
    manager: ContainerManager, refs: Sequence[str], *, stream: bool, interval: float = INTERVAL
) -> AsyncIterator[list[ContainerStats]]:
    """One list per ``interval`` (the first after one interval); a single list unless ``stream``.

    ``refs`` (ids, prefixes, names) must exist when called (NotFound otherwise); with none, every
    running container, re-listed at each tick so new ones appear and gone ones drop out.
    """
    for ref in refs:
        manager.get(ref)  # NotFound / InvalidArgument up front, before the first interval
    previous: dict[str, tuple[int, int]] = {}  # id → (cpu ns, monotonic ns) of the last sample

    def take() -> list[tuple[ContainerRecord, Sample, bool, int]]:
        out = []
        for record in _targets(manager, refs):
            sample, from_cgroup = read_sample(manager, record)
            out.append((record, sample, from_cgroup, time.monotonic_ns()))
        return out

    for record, sample, _, t in await asyncio.to_thread(take):
        previous[record.id] = (sample.cpu_ns, t)
    while True:
        await asyncio.sleep(interval)
        report = []
        for record, sample, from_cgroup, t in await asyncio.to_thread(take):
            cpu = 0.0
            if record.id in previous:
                cpu_then, t_then = previous[record.id]
                if t > t_then and sample.cpu_ns >= cpu_then:
                    cpu = 100.0 * (sample.cpu_ns - cpu_then) / (t - t_then)
            previous[record.id] = (sample.cpu_ns, t)
            report.append(
                ContainerStats(record.id, record.name, record.state, now(), cpu, sample, from_cgroup)
            )
        yield report
        if not stream:
            return
