"""Which cgroup subtree the platform's user may write, and so which resource limits it can enforce.

Rootless limits need a cgroup the unprivileged user owns. Root hands each user one subtree of its own
(``dockyard system delegate USER``; ``make setup`` does it for every member of the ``dockyard`` group,
through the same :func:`delegate`); runc then creates one child per container in it and writes the
limits there (checked on a v1 hybrid host: OOM kill at the memory limit, forks refused past
pids.max, the freezer for pause). The layout::

    cgroup v1 (and hybrid: the v1 hierarchies; the empty v2 one is not used by runc 1.1)
      /sys/fs/cgroup/<hierarchy>/dockyard/             root's (made by delegate), in EVERY hierarchy
        <user>/                                        owned by <user> (dir, cgroup.procs, tasks)
          <container id>/                              made by runc (cgroupsPath /dockyard/<user>/<id>)
      cpuset's dockyard/ and dockyard/<user>/ get cpuset.cpus and cpuset.mems copied from their
      parent (runc cannot: the files are root's)
    cgroup v2
      /sys/fs/cgroup/dockyard/                         root's; subtree_control "cpu io memory pids …"
        <user>/                                        owned by <user> (dir, cgroup.procs,
          cgroup.subtree_control  "cpu memory pids …"   cgroup.subtree_control, cgroup.threads)
          platform/                                    `dockyard up` (as root) moves itself here first:
          <container id>/                              moving a process needs write access to the
                                                       common ancestor's cgroup.procs, so the runtime
                                                       must live inside

A user's own subtree keeps its containers (and its limits, and ``pause``) out of every other user's
reach. The older shared layout, ``dockyard/`` itself owned by one user, is still found when a user
has no subtree of its own (:func:`probe` tries ``dockyard/<user>`` first, then ``dockyard``).

runc puts a container in *every* v1 hierarchy it finds, so one hierarchy without a writable
subtree makes every container with a cgroupsPath fail: v1 is usable only when all are. :func:`probe`
decides that once, from the directory it is given (tests pass a fake tree); it reads a few
attributes and never writes. :class:`Delegation` says what is enforceable and, for what is not,
one line naming what is missing. :func:`delegate` (root only, idempotent) makes a user's subtree.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The directory under each hierarchy (v1) or under the root (v2) that holds one subtree per user.
SUBTREE = "dockyard"
#: The group whose members ``make setup`` gives a subtree each.
GROUP = "dockyard"
#: Processes a container may have at once unless it says otherwise (podman's default, 2048):
#: a fork bomb stays inside its container instead of using up the platform user's processes,
#: which the runtime needs for its own threads. Applied only where the pids controller is
#: delegated; without it the default is reported (doctor, info), never a reason to refuse.
DEFAULT_PIDS_LIMIT = 2048
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Where ``dockyard up`` puts its own processes on cgroup v2 (inside the delegated subtree).
PLATFORM_LEAF = "platform"
SETUP_HINT = (
    "`dockyard system delegate USER` as root (or `make setup`, which delegates "
    "/sys/fs/cgroup/…/dockyard/<user> to every member of the dockyard group)"
)
#: v2 controllers a user's subtree gets enabled, where the kernel has them.
V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")

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
    ``subtree``: that directory relative to each hierarchy, ``dockyard/<user>`` (or the older shared
    ``dockyard``); containers get ``cgroupsPath = /<subtree>/<id>``.
    """

    mode: str  # "v1", "v2" or "none"
    usable: bool
    controllers: frozenset[str] = frozenset()
    paths: Mapping[str, Path] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    has_swap_accounting: bool = False
    subtree: str = SUBTREE

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
        where = f"{CGROUP_ROOT}/*/{self.subtree}" if self.mode == "v1" else f"{CGROUP_ROOT}/{self.subtree}"
        whose = "" if self.subtree != SUBTREE else " (the shared layout: no subtree of this user's own)"
        can = ", ".join(self.enforceable) or "none"
        return f"cgroup {self.mode}, {where} delegated{whose}: enforces {can}; pause via the freezer"


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


def _probe_v1(root: Path, subtree: str) -> Delegation:
    hierarchies = v1_hierarchies(root)
    problems: list[str] = []
    paths: dict[str, Path] = {}
    for name, mount in sorted(hierarchies.items()):
        sub = mount / subtree
        if not sub.is_dir():
            problems.append(f"{sub} is missing")
        elif not _writable(sub) or not _file_writable(sub / "cgroup.procs"):
            problems.append(f"{sub} is not writable by this user")
        elif name == "cpuset" and not _cpuset_ready(sub):
            problems.append(f"{sub} has no cpuset.cpus/cpuset.mems")
        else:
            paths[name] = sub
    problems = sorted(set(problems))
    if hierarchies and not paths and all(p.endswith(" is missing") for p in problems):
        problems = [f"{root}/*/{subtree} is missing (in every hierarchy)"]  # one line, not one per hierarchy
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
        subtree=subtree,
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


def _probe_v2(root: Path, own: str, subtree: str) -> Delegation:
    sub = root / subtree
    if not sub.is_dir():
        return Delegation("v2", False, problems=(f"{sub} is missing",))
    if not (_writable(sub) and _file_writable(sub / "cgroup.procs")):
        return Delegation("v2", False, problems=(f"{sub} is not writable by this user",))
    if not _file_writable(sub / "cgroup.subtree_control"):
        return Delegation(
            "v2", False, problems=(f"{sub}/cgroup.subtree_control is not writable by this user",)
        )
    inside = own == f"/{subtree}" or own.startswith(f"/{subtree}/")
    if not inside:
        return Delegation(
            "v2",
            False,
            problems=(
                f"this process's cgroup {own or '?'} is outside /{subtree} (start the platform with "
                f"`dockyard up` as root, which moves it into /{subtree}/{PLATFORM_LEAF})",
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
    return Delegation(
        "v2", True, controllers | {"freezer"}, paths, problems, has_swap_accounting=swap, subtree=subtree
    )


def user_subtree(user: str) -> str:
    """A user's own subtree, relative to each hierarchy (v1) or to the root (v2)."""
    return f"{SUBTREE}/{user}"


def this_user() -> str:
    """The name of the user this process runs as ("" if it has none)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return ""


def probe(
    root: Path = CGROUP_ROOT, *, own_v2: str | None = None, user: str | None = None, as_platform: bool = False
) -> Delegation:
    """Decide which cgroup subtree ``user`` (default: this process's) may write under ``root``:
    its own ``dockyard/<user>`` if usable, else the older shared ``dockyard``; when neither is, what
    is missing from its own. Reads only; never raises.

    ``own_v2`` is this process's v2 cgroup path (default: read from /proc/self/cgroup);
    ``as_platform`` judges as the platform will see it once `dockyard up` put it in the subtree's
    ``platform`` leaf (for ``dockyard doctor``, which runs elsewhere). The runtime, inside its user
    namespace, passes the real user's name: there its own uid is 0.
    """
    name = this_user() if user is None else user
    try:
        if (root / "cgroup.controllers").is_file():
            found = own_cgroup_v2() if own_v2 is None else own_v2

            def at(subtree: str) -> Delegation:
                return _probe_v2(root, f"/{subtree}/{PLATFORM_LEAF}" if as_platform else found, subtree)
        else:

            def at(subtree: str) -> Delegation:
                return _probe_v1(root, subtree)

        own = at(user_subtree(name)) if name else None
        if own is not None and own.usable:
            return own
        shared = at(SUBTREE)
        return shared if shared.usable or own is None else own
    except OSError as exc:
        return Delegation("none", False, problems=(f"cannot read {root}: {exc.strerror or exc}",))


def enter_v2_subtree(uid: int, gid: int, root: Path = CGROUP_ROOT, pid: int | None = None) -> bool:
    """As root on cgroup v2: move ``pid`` (default: this process) into the ``platform`` leaf of
    ``uid``'s subtree (``/dockyard/<user>``, or the shared ``/dockyard``), made and handed to ``uid``
    if needed, so the unprivileged runtime may move containers within that subtree.

    A no-op returning False on v1 (no such rule there), or when no subtree is set up.
    """
    if not (root / "cgroup.controllers").is_file():
        return False
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = ""
    sub = root / user_subtree(name) if name and (root / user_subtree(name)).is_dir() else root / SUBTREE
    if not sub.is_dir():
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


# --- delegation (root only) ----------------------------------------------------------------------------

#: The files of a cgroup its owner needs: to make children, move processes, enable controllers.
_OWNED_FILES = ("cgroup.procs", "tasks", "cgroup.threads", "cgroup.subtree_control")


class DelegationError(Exception):
    """Why a subtree could not be delegated, one line."""


@dataclass
class Delegated:
    """What :func:`delegate` did: one line per change (none when all was in place already) and
    one per thing it could not do but that does not stop the subtree from being used."""

    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def group_members(group: str = GROUP) -> list[str]:
    """Every user in ``group``, named in /etc/group or with it as primary group; sorted, [] if no group."""
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return []
    names = set(entry.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == entry.gr_gid}
    return sorted(names)


def delegate(user: str, root: Path = CGROUP_ROOT) -> Delegated:
    """Give ``user`` its own subtree ``dockyard/<user>`` (see the module's layout), making whatever is
    missing; idempotent: a second call changes nothing and reports no action.

    Needs root. KeyError for an unknown user; DelegationError when there is no cgroup filesystem
    or a directory cannot be made or handed over. ``dockyard/`` itself, when it exists, keeps its
    owner (a host set up with the shared layout goes on working for the user that owns it).
    """
    pw = pwd.getpwnam(user)
    done = Delegated()
    try:
        if (root / "cgroup.controllers").is_file():
            _delegate_v2(root, pw, done)
            return done
        mounts = sorted(set(v1_hierarchies(root).values()))
        if not mounts:
            raise DelegationError(f"no cgroup hierarchy under {root}: nothing to delegate")
        for mount in mounts:
            top = mount / SUBTREE
            sub = top / user
            for d in (top, sub):
                _make(d, done)
                _fill_cpuset(d, done)
            _give(sub, pw, done)
    except OSError as exc:
        raise DelegationError(f"{exc.filename or root}: {exc.strerror or exc}") from None
    return done


def _delegate_v2(root: Path, pw: pwd.struct_passwd, done: Delegated) -> None:
    available = set((root / "cgroup.controllers").read_text().split())
    wanted = [c for c in V2_CONTROLLERS if c in available]
    top = root / SUBTREE
    sub = top / pw.pw_name
    _make(top, done)
    # A controller reaches sub's children only when every ancestor enables it for its children.
    _enable(root, wanted, done)
    _enable(top, wanted, done)
    _make(sub, done)
    _give(sub, pw, done)
    _enable(sub, wanted, done)


def _make(d: Path, done: Delegated) -> None:
    if not d.is_dir():
        d.mkdir()
        done.actions.append(f"created cgroup {d}")


def _fill_cpuset(d: Path, done: Delegated) -> None:
    """v1 cpuset: a new cgroup starts with empty cpuset.cpus/mems, and no process may join it until
    they are set; runc, not root, cannot set them, so copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        f = d / name
        if f.is_file() and not f.read_text().strip():
            f.write_text((d.parent / name).read_text())
            done.actions.append(f"copied {name} into {d} from its parent")


def _give(d: Path, pw: pwd.struct_passwd, done: Delegated) -> None:
    changed = False
    for path in (d, *(d / f for f in _OWNED_FILES)):
        if not path.exists():
            continue
        st = path.stat()
        if (st.st_uid, st.st_gid) != (pw.pw_uid, pw.pw_gid):
            shutil.chown(path, pw.pw_uid, pw.pw_gid)
            changed = True
    if changed:
        done.actions.append(f"gave cgroup {d} to {pw.pw_name}")


def _enable(d: Path, controllers: list[str], done: Delegated) -> None:
    control = d / "cgroup.subtree_control"
    if not control.is_file():  # every v2 cgroup has one: d is not a cgroup
        done.warnings.append(f"{control} is missing: cannot enable controllers there")
        return
    enabled = set(control.read_text().split())
    for c in controllers:
        if c in enabled:
            continue
        try:
            control.write_text(f"+{c}\n")
        except OSError as exc:  # e.g. a process lives in d itself (v2's no-internal-processes rule)
            done.warnings.append(f"cannot enable {c} in {control}: {exc.strerror or exc}")
        else:
            done.actions.append(f"enabled the {c} controller in {control}")
