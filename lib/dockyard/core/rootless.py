"""Rootless facts: what this host lets an unprivileged user do, decided once at start-up.

Principle 10: rootless is a capability ladder. :func:`detect` probes the host once (about 0.1 s here,
every probe bounded by a timeout and never raising), and returns :class:`RootlessFacts`: one
:class:`Check` per fact, plus the two decisions taken from them:

- the snapshotter — kernel overlay inside a user namespace → fuse-overlayfs → plain copy;
- the OCI runtime — crun where it really runs a container, else runc.

The facts serialise to JSON (:meth:`RootlessFacts.to_json`, :meth:`RootlessFacts.from_json`) so the
runtime can record what it decided and ``dockyard doctor`` can print the same thing a person can act on.

The parsing helpers (:func:`parse_subid`, :func:`subid_problems`, :func:`cgroup_mode`,
:func:`delegated_controllers`) are pure or take the directory they read as a parameter, so unit tests
feed them fakes; the probes run real binaries.

Probe scratch space (removed before :func:`detect` returns)::

    $TMPDIR/dockyard-doctor-XXXX/
      ovl/{lower,upper,work,merged}/   kernel overlay mounted in a throwaway user+mount namespace
      fuse/{lower,upper,work,merged}/  the same with fuse-overlayfs
      bundle/config.json, rootfs/bin/{busybox,true}   a one-shot rootless container
      state-runc/ state-crun/          --root of each OCI runtime, so no real state is touched
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dockyard.core.tools import find_tool

#: Ids a user needs in /etc/subuid and /etc/subgid: a full 16-bit range, as images assume.
MIN_SUBIDS = 65536
#: cgroup v2 controllers a rootless runtime needs delegated to enforce --memory, --pids-limit, --cpus.
LIMIT_CONTROLLERS = frozenset({"memory", "pids", "cpu"})
#: Upper bound of any single probe, in seconds.
PROBE_TIMEOUT = 3.0
SETUP_FIX = "run `make setup` as root (deploy/setup/host.sh)"
CRASH_FIX = "a bug in the probe itself: report it with the detail above"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


class SnapshotterChoice(enum.StrEnum):
    """How container root filesystems are assembled, best first."""

    OVERLAY = "overlayfs"  # kernel overlay mounted inside the user namespace (Linux ≥ 5.11)
    FUSE_OVERLAYFS = "fuse-overlayfs"
    COPY = "copy"  # always works; costs a full copy of the image per container


class OciRuntimeChoice(enum.StrEnum):
    """Which OCI runtime runs containers; NONE means no container can run."""

    CRUN = "crun"
    RUNC = "runc"
    NONE = "none"


class CgroupMode(enum.StrEnum):
    V1 = "v1"
    HYBRID = "hybrid"  # v1 controllers plus an empty v2 hierarchy at /sys/fs/cgroup/unified
    V2 = "v2"
    NONE = "none"


@dataclass(frozen=True)
class Check:
    """One fact about the host. ``fix`` says what to do when ``ok`` is false.

    ``required`` checks must all pass for rootless containers to run at all; the others only lose a
    rung of a ladder or a feature (resource limits, crun) and are reported, not fatal.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


@dataclass(frozen=True)
class RootlessFacts:
    """Everything :func:`detect` found, and what it decided."""

    user: str
    uid: int
    kernel: str
    cgroup: CgroupMode
    limits_enforceable: bool
    snapshotter: SnapshotterChoice
    oci_runtime: OciRuntimeChoice
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every required check passed: rootless containers can run here."""
        return all(c.ok for c in self.checks if c.required) and self.oci_runtime is not OciRuntimeChoice.NONE

    def check(self, name: str) -> Check:
        """The check called ``name``; KeyError if there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RootlessFacts:
        d = json.loads(text)
        return cls(
            user=d["user"],
            uid=d["uid"],
            kernel=d["kernel"],
            cgroup=CgroupMode(d["cgroup"]),
            limits_enforceable=d["limits_enforceable"],
            snapshotter=SnapshotterChoice(d["snapshotter"]),
            oci_runtime=OciRuntimeChoice(d["oci_runtime"]),
            checks=tuple(Check(**c) for c in d["checks"]),
        )


# --- pure helpers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubIdRange:
    """One line of /etc/subuid or /etc/subgid: ``owner:start:count`` (owner is a name or a uid)."""

    owner: str
    start: int
    count: int

    @property
    def end(self) -> int:
        """One past the last id."""
        return self.start + self.count


def parse_subid(text: str) -> list[SubIdRange]:
    """Parse a subid file. Blank lines, ``#`` comments and malformed lines are skipped."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        out.append(SubIdRange(parts[0], int(parts[1]), int(parts[2])))
    return out


def subid_problems(ranges: Sequence[SubIdRange], user: str, uid: int) -> tuple[int, list[str]]:
    """The ids ``user`` owns in ``ranges`` and what is wrong with them.

    Problems: fewer than :data:`MIN_SUBIDS` ids in total; a range of the user's that overlaps
    another owner's range (two users would share host ids, so one could reach the other's files).
    """
    mine = [r for r in ranges if r.owner in (user, str(uid))]
    total = sum(r.count for r in mine)
    problems = []
    if total < MIN_SUBIDS:
        problems.append(f"{user} has {total} ids, needs ≥ {MIN_SUBIDS}")
    for m in mine:
        for o in ranges:
            if o.owner not in (user, str(uid)) and m.start < o.end and o.start < m.end:
                problems.append(f"{m.owner}:{m.start}:{m.count} overlaps {o.owner}:{o.start}:{o.count}")
    return total, problems


def next_free_subid_start(ranges: Iterable[SubIdRange], floor: int = 100000) -> int:
    """The first start ≥ ``floor`` past every range: where a new range overlaps nothing."""
    return max([floor, *(r.end for r in ranges)])


def cgroup_mode(root: Path = Path("/sys/fs/cgroup")) -> CgroupMode:
    """Which cgroup layout ``root`` shows: v2 (unified), hybrid, v1, or none."""
    if (root / "cgroup.controllers").is_file():
        return CgroupMode.V2
    v1 = any((root / c).is_dir() for c in ("memory", "pids", "cpu", "cpu,cpuacct", "devices", "freezer"))
    if v1 and (root / "unified" / "cgroup.controllers").is_file():
        return CgroupMode.HYBRID
    return CgroupMode.V1 if v1 else CgroupMode.NONE


def delegated_controllers(root: Path, uid: int) -> frozenset[str]:
    """cgroup v2 controllers systemd delegates to ``uid`` (its user@UID.service), empty if none.

    Only meaningful in v2 mode; the delegated subtree must also be writable by the user.
    """
    svc = root / "user.slice" / f"user-{uid}.slice" / f"user@{uid}.service"
    try:
        if not os.access(svc, os.W_OK):
            return frozenset()
        return frozenset((svc / "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()


def choose_snapshotter(kernel_overlay: bool, fuse_overlayfs: bool) -> SnapshotterChoice:
    if kernel_overlay:
        return SnapshotterChoice.OVERLAY
    if fuse_overlayfs:
        return SnapshotterChoice.FUSE_OVERLAYFS
    return SnapshotterChoice.COPY


def choose_oci_runtime(runc_ok: bool, crun_ok: bool) -> OciRuntimeChoice:
    if crun_ok:
        return OciRuntimeChoice.CRUN
    if runc_ok:
        return OciRuntimeChoice.RUNC
    return OciRuntimeChoice.NONE


# --- probes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    rc: int
    out: str

    @property
    def message(self) -> str:
        """The last meaningful output line: where runc, crun and mount put the reason."""
        lines = [ln.strip() for ln in self.out.splitlines() if ln.strip() and not ln.startswith(_NOISE)]
        return lines[-1] if lines else f"exit status {self.rc}"


#: Output lines that never explain a failure (fuse-overlayfs warns about every mount option it skips).
_NOISE = ("unknown argument ignored",)


def _run(argv: Sequence[str]) -> _Run:
    """Run argv, never raise: a missing binary or a timeout is a failed run with a message."""
    try:
        p = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except FileNotFoundError:
        return _Run(127, f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return _Run(124, f"{argv[0]}: timed out after {PROBE_TIMEOUT:g}s")
    except OSError as e:
        return _Run(126, f"{argv[0]}: {e}")
    return _Run(p.returncode, p.stdout)


def _guard(name: str, probe: Callable[[], Check]) -> Check:
    """Run a probe; a probe that raises becomes a failed check instead of a traceback."""
    try:
        return probe()
    except Exception as e:
        return Check(name, False, f"probe crashed: {type(e).__name__}: {e}", CRASH_FIX)


def _setid_helper(name: str) -> Check:
    fix = "apt install uidmap"
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        return Check(name, False, "not installed", fix)
    st = os.stat(path)
    if st.st_uid == 0 and st.st_mode & stat.S_ISUID:
        return Check(name, True, f"{path} (setuid root)", fix)
    with contextlib.suppress(OSError):
        if os.getxattr(path, "security.capability"):
            return Check(name, True, f"{path} (file capabilities)", fix)
    return Check(
        name, False, f"{path} is neither setuid root nor has file capabilities", f"{fix}; chmod u+s {path}"
    )


def _subid(kind: str, path: Path, user: str, uid: int) -> Check:
    name = kind
    fix = f"{SETUP_FIX}, or add '{user}:100000:{MIN_SUBIDS}' to {path}"
    try:
        ranges = parse_subid(path.read_text())
    except OSError as e:
        return Check(name, False, f"cannot read {path}: {e.strerror}", fix)
    total, problems = subid_problems(ranges, user, uid)
    if problems:
        if total < MIN_SUBIDS:
            start = next_free_subid_start(ranges)
            fix = f"{SETUP_FIX}, or add '{user}:{start}:{MIN_SUBIDS}' to {path}"
        else:
            fix = f"give {user} a range in {path} that no other entry overlaps"
        return Check(name, False, f"{path}: " + "; ".join(problems), fix)
    return Check(name, True, f"{total} ids for {user} in {path}", fix)


def _device(path: str, fix: str) -> Check:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return Check(path, False, "missing", fix)
    except OSError as e:
        mode = ""
        with contextlib.suppress(OSError):
            mode = f" (mode {stat.S_IMODE(os.stat(path).st_mode):04o})"
        return Check(path, False, f"cannot open read-write: {e.strerror}{mode}", fix)
    os.close(fd)
    return Check(path, True, "read-write", fix)


def _tool(name: str, fix: str) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, False, "not installed", fix)
    r = _run([path, "--version"])
    ver = next((ln.strip() for ln in r.out.splitlines() if "version" in ln.lower()), r.message)
    if r.rc != 0:
        return Check(name, False, f"{path} --version failed: {r.message}", fix)
    return Check(name, True, f"{path}: {ver}", fix)


def _user_networks() -> Check:
    """What ``network create`` does in the node's namespace, in a throwaway one: forwarding on,
    a bridge, a masquerade rule, each tool by the absolute path the runtime will use."""
    fix = "apt install procps iproute2 iptables (sysctl, ip, iptables)"
    found = {
        "sysctl": find_tool("sysctl"),
        "ip": find_tool("ip"),
        "iptables": find_tool("iptables-nft", "iptables"),
    }
    tools = [path for path in found.values() if path is not None]
    if len(tools) < len(found):
        missing = [name for name, path in found.items() if path is None]
        return Check("user networks", False, f"not installed: {', '.join(missing)}", fix)
    script = (
        '"$1" -q -w net.ipv4.ip_forward=1 && "$2" link add dydoctor0 type bridge && '
        '"$3" -t nat -A POSTROUTING -o dydoctor0 -j MASQUERADE'
    )
    r = _run(["unshare", "--user", "--map-root-user", "--net", "--", "/bin/sh", "-c", script, "sh", *tools])
    if r.rc == 0:
        return Check("user networks", True, "a bridge and NAT can be made in a network namespace", fix)
    return Check("user networks", False, f"could not make a network: {r.message}", fix)


def _userns() -> Check:
    fix = "enable unprivileged user namespaces: sysctl -w user.max_user_namespaces=15000"
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    with contextlib.suppress(OSError):
        if clone.read_text().strip() == "0":
            fix = "sysctl -w kernel.unprivileged_userns_clone=1"
    r = _run(["unshare", "--user", "--map-root-user", "true"])
    if r.rc == 0:
        return Check("user namespaces", True, "unshare --user --map-root-user works", fix)
    return Check("user namespaces", False, f"unshare --user failed: {r.message}", fix)


def _overlay_dirs(scratch: Path, sub: str) -> tuple[Path, str]:
    base = scratch / sub
    for d in ("lower", "upper", "work", "merged"):
        (base / d).mkdir(parents=True)
    (base / "lower" / "probe").write_text("x")
    opts = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
    return base, opts


def _kernel_overlay(scratch: Path) -> Check:
    name = "kernel overlay in userns"
    fix = "needs Linux ≥ 5.11 (falls back to fuse-overlayfs)"
    base, opts = _overlay_dirs(scratch, "ovl")
    m = base / "merged"
    script = f"mount -t overlay overlay -o {opts} {m} && test -f {m}/probe && umount {m}"
    r = _run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script])
    if r.rc == 0:
        return Check(name, True, "mount -t overlay works inside a user namespace", fix)
    return Check(name, False, f"mount failed: {r.message}", fix)


def _fuse_overlayfs(scratch: Path) -> Check:
    name = "fuse-overlayfs"
    fix = "apt install fuse-overlayfs fuse3; and /dev/fuse must be rw: " + SETUP_FIX
    path = shutil.which("fuse-overlayfs")
    if path is None:
        return Check(name, False, "not installed", fix)
    base, opts = _overlay_dirs(scratch, "fuse")
    m = base / "merged"
    script = f"{path} -o {opts} {m} && test -f {m}/probe && umount {m}"
    r = _run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script])
    if r.rc == 0:
        return Check(name, True, f"{path} mounts inside a user namespace", fix)
    return Check(name, False, f"mount failed: {r.message}", fix)


def _bundle(scratch: Path, uid: int, gid: int) -> Path | None:
    """A one-shot rootless bundle running busybox `true`, or None without a static busybox."""
    busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.isfile(p)), None)
    if busybox is None:
        return None
    bundle = scratch / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(busybox, bundle / "rootfs" / "bin" / "busybox")
    (bundle / "rootfs" / "bin" / "true").symlink_to("busybox")
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/true"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "dockyard-doctor",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": uid, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": gid, "size": 1}],
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")],
        },
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def _oci_runtime(name: str, scratch: Path, bundle: Path | None) -> Check:
    fix = f"apt install {name}"
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        return Check(name, False, "not installed", fix)
    v = _run([path, "--version"])
    if v.rc != 0:
        return Check(name, False, f"--version failed: {v.message}", fix)
    version = v.out.splitlines()[0].strip() if v.out else name
    state = scratch / f"state-{name}"
    if bundle is None:
        r = _run([path, "--root", str(state), "list"])
        if r.rc != 0:
            return Check(name, False, f"{version}: `{name} list` failed: {r.message}", fix)
        return Check(name, True, f"{version} (not run: no static busybox for a probe container)", fix)
    r = _run([path, "--root", str(state), "run", "--bundle", str(bundle), f"dockyard-doctor-{os.getpid()}"])
    if r.rc == 0:
        return Check(name, True, f"{version}: ran a rootless container", fix)
    why = r.message
    if "hybrid" in why:
        fix = "unsupported on cgroup v1/hybrid hosts: use runc (chosen automatically), or boot with cgroup v2"
    return Check(name, False, f"{version}: container failed: {why}", fix)


def _cgroup_limits(root: Path, uid: int, mode: CgroupMode) -> Check:
    """ok exactly when rootless resource limits can be enforced: a cgroup subtree this user may
    write (its own ``/sys/fs/cgroup/<hierarchy>/dockyard/<user>`` on v1, ``/sys/fs/cgroup/dockyard/<user>``
    with its controllers enabled on v2, or the older shared ``dockyard``), the same decision the
    runtime takes (:mod:`dockyard.core.cgroups`)."""
    from dockyard.core import cgroups

    name = "cgroup limits"
    fix = f"{cgroups.SETUP_HINT}; it must run again after a reboot (cgroupfs is not persistent)"
    if mode is CgroupMode.NONE:
        return Check(
            name,
            False,
            "no cgroup filesystem: resource limits cannot be enforced, and there is no default pids limit",
            fix,
        )
    # On v2 the platform runs inside the subtree (`dockyard up` as root moves itself there), so
    # judge the subtree as the runtime will see it, not from this (doctor's) cgroup.
    delegation = cgroups.probe(root, as_platform=True)
    enforced = delegation.enforceable
    no_default = (
        "; no default pids limit: a fork bomb in a container can use up this user's processes"
        " and stop the runtime"
    )
    if not delegation.usable:
        return Check(name, False, delegation.summary() + no_default, fix)
    lacking = [f for f in ("--memory", "--cpus", "--pids-limit") if f not in enforced]
    if lacking:
        pids = no_default if "--pids-limit" in lacking else ""
        return Check(name, False, f"{delegation.summary()}; cannot enforce {', '.join(lacking)}{pids}", fix)
    default = f"; containers get --pids-limit {cgroups.DEFAULT_PIDS_LIMIT} unless they set one"
    return Check(name, True, delegation.summary() + default, fix)


def _unprivileged(uid: int, user: str) -> Check:
    fix = "run as an ordinary user, e.g. `runuser -u dockyard -- dockyard doctor`"
    if uid == 0:
        return Check(
            "unprivileged user", False, "running as root: these facts are not the rootless ones", fix
        )
    return Check("unprivileged user", True, f"{user} (uid {uid})", fix)


def detect(cgroup_root: Path = Path("/sys/fs/cgroup")) -> RootlessFacts:
    """Probe the host once and decide snapshotter and OCI runtime. Never raises; ~0.1-0.5 s.

    Runs real commands as the current user: unshare (user+mount namespaces), a kernel overlay and
    a fuse-overlayfs mount in throwaway namespaces, one ``/bin/true`` container per OCI runtime.
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    checks: list[Check] = []

    def add(name: str, probe: Callable[[], Check], required: bool = True) -> Check:
        c = replace(_guard(name, probe), required=required)
        checks.append(c)
        return c

    add("unprivileged user", lambda: _unprivileged(uid, user))
    add("user namespaces", _userns)
    add("newuidmap", lambda: _setid_helper("newuidmap"))
    add("newgidmap", lambda: _setid_helper("newgidmap"))
    add("subuid", lambda: _subid("subuid", Path("/etc/subuid"), user, uid))
    add("subgid", lambda: _subid("subgid", Path("/etc/subgid"), user, uid))
    # Optional ones below only lose a rung of a ladder (snapshotter, runtime) or a feature (limits).
    fuse_dev = add("/dev/fuse", lambda: _device("/dev/fuse", SETUP_FIX), required=False)
    with tempfile.TemporaryDirectory(prefix="dockyard-doctor-") as tmp:
        scratch = Path(tmp)
        kovl = add("kernel overlay in userns", lambda: _kernel_overlay(scratch), required=False)
        fovl = add("fuse-overlayfs", lambda: _fuse_overlayfs(scratch), required=False)
        try:
            bundle = _bundle(scratch, uid, gid)
        except OSError:
            bundle = None  # the runtime checks fall back to `<runtime> list`
        runc = add("runc", lambda: _oci_runtime("runc", scratch, bundle))
        crun = add("crun", lambda: _oci_runtime("crun", scratch, bundle), required=False)
    mode = CgroupMode.NONE
    with contextlib.suppress(OSError):
        mode = cgroup_mode(cgroup_root)
    enforceable = add("cgroup limits", lambda: _cgroup_limits(cgroup_root, uid, mode), required=False).ok
    add("/dev/net/tun", lambda: _device("/dev/net/tun", SETUP_FIX))
    add("slirp4netns", lambda: _tool("slirp4netns", "apt install slirp4netns"))
    add("user networks", _user_networks, required=False)
    add("rootlesskit", lambda: _tool("rootlesskit", "apt install rootlesskit"), required=False)

    oci = choose_oci_runtime(runc.ok, crun.ok)
    if oci is OciRuntimeChoice.CRUN and not runc.ok:  # runc is only required when it is the one chosen
        checks[checks.index(runc)] = replace(runc, required=False)
    return RootlessFacts(
        user=user,
        uid=uid,
        kernel=os.uname().release,
        cgroup=mode,
        limits_enforceable=enforceable,
        snapshotter=choose_snapshotter(kovl.ok, fovl.ok and fuse_dev.ok),
        oci_runtime=oci,
        checks=tuple(checks),
    )
