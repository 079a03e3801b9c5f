"""Which cgroup subtree the platform's user may write, and so which resource limits it can enforce.

Rootless limits need a cgroup the unprivileged user owns. ``make setup`` (deploy/setup/host.sh),
run as root, makes one and hands it over; runc then creates one child per container in it and
writes the limits there (checked on a v1 hybrid host: OOM kill at the memory limit, forks refused
past pids.max, the freezer for pause). The layouts it makes::

    cgroup v1 (and hybrid: the v1 hierarchies; the empty v2 one is not used by runc 1.1)
      /sys/fs/cgroup/<hierarchy>/dockyard/           owned by the user, for EVERY mounted hierarchy
        <container id>/                              made by runc (cgroupsPath /dockyard/<id>)
      cpuset's dockyard/ has cpuset.cpus and cpuset.mems copied from its parent (runc cannot: the
      files are root's)
    cgroup v2
      /sys/fs/cgroup/dockyard/                       owned by the user (dir, cgroup.procs,
        cgroup.subtree_control  "cpu memory pids …"   cgroup.subtree_control, cgroup.threads)
        platform/                                    `dockyard up` (as root) moves itself here first:
        <container id>/                              moving a process needs write access to the common
                                                     ancestor's cgroup.procs, so the runtime must live inside

runc puts a container in *every* v1 hierarchy it finds, so one hierarchy without a writable
subtree makes every container with a cgroupsPath fail: v1 is usable only when all are. :func:`probe`
decides that once, from the directory it is given (tests pass a fake tree); it reads a few
attributes and never writes. :class:`Delegation` says what is enforceable and, for what is not,
one line naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The subtree's name under each hierarchy (v1) or under the root (v2).
SUBTREE = "dockyard"
#: Processes a container may have at once unless it says otherwise (podman's default, 2048):
#: a fork bomb stays inside its container instead of using up the platform user's processes,
#: which the runtime needs for its own threads. Applied only where the pids controller is
#: delegated; without it the default is reported (doctor, info), never a reason to refuse.
DEFAULT_PIDS_LIMIT = 2048
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Where ``dockyard up`` puts its own processes on cgroup v2 (inside the delegated subtree).
PLATFORM_LEAF = "platform"
SETUP_HINT = "run `make setup` as root (deploy/setup/host.sh delegates /sys/fs/cgroup/…/dockyard)"

#: Each limit (as the CLI flag names it) → the controller that enforces it.
LIMIT_CONTROLLERS: Mapping[str, str] = {
    "--memory": "memory",
    "--memory-swap": "memory",
    "--cpus": "cpu",
    "--cpu-shares": "cpu",
    "--pids-limit": "pids",
}


@dataclass(frozen=True)
class Delegation:
    """What :func:`probe` found.

    ``usable``: containers can be given ``cgroupsPath = /dockyard/<id>`` (runc will succeed);
    ``controllers``: controllers whose limits that subtree can carry (empty unless usable);
    ``problems``: why something is missing, one short clause each (empty when all is well).
    ``paths``: controller → the subtree directory (v1: one per hierarchy; v2: the one directory).
    """

    mode: str  # "v1", "v2" or "none"
    usable: bool
    controllers: frozenset[str] = frozenset()
    paths: Mapping[str, Path] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    has_swap_accounting: bool = False

    def missing(self, limits: list[str]) -> str | None:
        """One line naming why ``limits`` (CLI flags) cannot be enforced here, or None if they can."""
        if not limits:
            return None
        if not self.usable:
            why = "; ".join(self.problems) or "no cgroup this user may write"
            return (
                f"{', '.join(limits)}: cannot enforce resource limits on this host ({why}); fix: {SETUP_HINT}"
            )
        lacking = sorted({LIMIT_CONTROLLERS[f] for f in limits} - self.controllers)
        if lacking:
            return (
                f"{', '.join(limits)}: the delegated cgroup lacks the {', '.join(lacking)} controller; "
                f"fix: {SETUP_HINT}"
            )
        if "--memory-swap" in limits and not self.has_swap_accounting:
            return "--memory-swap: this kernel has no swap accounting (memory.memsw.*); leave it unset"
        return None

    @property
    def enforceable(self) -> list[str]:
        """The limit flags this host can enforce, in a stable order."""
        return [f for f in LIMIT_CONTROLLERS if self.missing([f]) is None]

    def summary(self) -> str:
        if not self.usable:
            return f"cgroup {self.mode}: no writable cgroup subtree ({'; '.join(self.problems)})"
        where = f"{CGROUP_ROOT}/*/{SUBTREE}" if self.mode == "v1" else str(self.paths.get("memory", SUBTREE))
        can = ", ".join(self.enforceable) or "none"
        return f"cgroup {self.mode}, {where} delegated: enforces {can}; pause via the freezer"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _file_writable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.W_OK)


def v1_hierarchies(root: Path) -> dict[str, Path]:
    """Controller (or ``name=systemd``) → its hierarchy's mount directory under ``root``.

    A hierarchy is a directory holding ``cgroup.procs`` and no ``cgroup.controllers`` (that is
    v2's); "cpu,cpuacct" names two controllers; symlinks to one hierarchy count once.
    """
    found: dict[str, Path] = {}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not (entry / "cgroup.procs").is_file() or (entry / "cgroup.controllers").exists():
            continue
        real = Path(os.path.realpath(entry))
        for name in entry.name.split(","):
            name = "name=systemd" if name == "systemd" else name
            found.setdefault(name, real)
    return found


def _probe_v1(root: Path) -> Delegation:
    hierarchies = v1_hierarchies(root)
    problems: list[str] = []
    paths: dict[str, Path] = {}
    for name, mount in sorted(hierarchies.items()):
        sub = mount / SUBTREE
        if not sub.is_dir():
            problems.append(f"{sub} is missing")
        elif not _writable(sub) or not _file_writable(sub / "cgroup.procs"):
            problems.append(f"{sub} is not writable by this user")
        elif name == "cpuset" and not _cpuset_ready(sub):
            problems.append(f"{sub} has no cpuset.cpus/cpuset.mems")
        else:
            paths[name] = sub
    problems = sorted(set(problems))
    if not hierarchies:
        return Delegation("none", False, problems=(f"no cgroup hierarchy under {root}",))
    usable = not problems
    controllers = frozenset(paths) & {"memory", "cpu", "pids", "cpuacct", "freezer", "blkio"}
    swap = usable and "memory" in paths and (paths["memory"] / "memory.memsw.limit_in_bytes").exists()
    return Delegation(
        "v1",
        usable,
        controllers if usable else frozenset(),
        paths,
        tuple(problems),
        has_swap_accounting=swap,
    )


def _cpuset_ready(sub: Path) -> bool:
    try:
        return all((sub / f).read_text().strip() for f in ("cpuset.cpus", "cpuset.mems"))
    except OSError:
        return False


def own_cgroup_v2(proc_cgroup: Path = Path("/proc/self/cgroup")) -> str:
    """This process's v2 cgroup path ("0::/x" line), "" if it has none."""
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return ""


def _probe_v2(root: Path, own: str) -> Delegation:
    sub = root / SUBTREE
    if not sub.is_dir():
        return Delegation("v2", False, problems=(f"{sub} is missing",))
    if not (_writable(sub) and _file_writable(sub / "cgroup.procs")):
        return Delegation("v2", False, problems=(f"{sub} is not writable by this user",))
    if not _file_writable(sub / "cgroup.subtree_control"):
        return Delegation(
            "v2", False, problems=(f"{sub}/cgroup.subtree_control is not writable by this user",)
        )
    inside = own == f"/{SUBTREE}" or own.startswith(f"/{SUBTREE}/")
    if not inside:
        return Delegation(
            "v2",
            False,
            problems=(
                f"this process's cgroup {own or '?'} is outside /{SUBTREE} (start the platform with "
                f"`dockyard up` as root, which moves it into /{SUBTREE}/{PLATFORM_LEAF})",
            ),
        )
    try:
        enabled = frozenset((sub / "cgroup.subtree_control").read_text().split())
    except OSError:
        enabled = frozenset()
    controllers = enabled & {"memory", "cpu", "pids", "io", "cpuset"}
    problems = tuple(
        f"{c} is not enabled in {sub}/cgroup.subtree_control"
        for c in ("memory", "cpu", "pids")
        if c not in enabled
    )
    paths = {c: sub for c in (*controllers, "freezer")}
    swap = "memory" in controllers and (sub / "memory.swap.max").exists()
    return Delegation("v2", True, controllers | {"freezer"}, paths, problems, has_swap_accounting=swap)


def probe(root: Path = CGROUP_ROOT, *, own_v2: str | None = None) -> Delegation:
    """Decide which cgroup subtree this user may write under ``root``. Reads only; never raises.

    ``own_v2`` is this process's v2 cgroup path (default: read from /proc/self/cgroup).
    """
    try:
        if (root / "cgroup.controllers").is_file():
            return _probe_v2(root, own_cgroup_v2() if own_v2 is None else own_v2)
        return _probe_v1(root)
    except OSError as exc:
        return Delegation("none", False, problems=(f"cannot read {root}: {exc.strerror or exc}",))


def enter_v2_subtree(uid: int, gid: int, root: Path = CGROUP_ROOT, pid: int | None = None) -> bool:
    """As root on cgroup v2: move ``pid`` (default: this process) into /dockyard/platform, made and
    handed to ``uid`` if needed, so the unprivileged runtime may move containers within /dockyard.

    A no-op returning False on v1 (no such rule there), or when the subtree is not set up.
    """
    sub = root / SUBTREE
    if not (root / "cgroup.controllers").is_file() or not sub.is_dir():
        return False
    leaf = sub / PLATFORM_LEAF
    try:
        leaf.mkdir(exist_ok=True)
        for path in (leaf, leaf / "cgroup.procs", leaf / "cgroup.threads", leaf / "cgroup.subtree_control"):
            if path.exists():
                os.chown(path, uid, gid)
        (leaf / "cgroup.procs").write_text(f"{pid or os.getpid()}\n")
    except OSError:
        return False
    return True
