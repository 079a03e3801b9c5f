"""The node's user + mount namespace, held open by a pause process; the runtime lives inside it.

Rootless containers need ids beyond the user's own: a file owned by uid 33 in an image must be
owned by uid 33 inside the container. So the runtime runs as root of a user namespace that maps

    0        → the user's own uid          (1 id)
    1…65536  → the user's subordinate ids  (/etc/subuid, /etc/subgid; mapped by newuidmap/newgidmap)

and in a mount namespace of its own, where it may mount overlays. Layer unpack (chown), the
rootfs mounts and runc all happen there, as podman does with its "pause" process.

The namespace must outlive any one runtime process (containers keep running across a
``kill -9`` of the service, and the restarted service must see their mounts), so it is held by a
pause process — ``sleep infinity`` in its own session — and the runtime re-executes itself
inside with ``nsenter``. The pause pid is recorded in ``<state>/pause.pid``; a new service
checks it still names a process in *our* namespace (same namespace inode recorded beside it)
before joining, else it makes a new one.

    <state-dir>/
      pause.pid        "<pid> <user-ns inode>"
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.core.errors import FailedPrecondition
from dockyard.core.rootless import MIN_SUBIDS, SubIdRange, parse_subid

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
#: Set in the environment of the re-executed runtime, so it does not try to enter again.
INSIDE_ENV = "_DOCKYARD_IN_NODE_NS"
#: What a runtime leaves running on purpose, as pid files under its state dir (and the commands
#: they run): the pause process holding the node namespace, and the node network's namespace
#: holder and slirp4netns (dockyard.runtime.netns).
NODE_PID_FILES = {"pause.pid": "sleep", "networks/netns.pid": "sleep", "networks/slirp.pid": "slirp4netns"}


@dataclass(frozen=True, slots=True)
class IdMap:
    """One line of a uid_map/gid_map: ``inside outside count``."""

    inside: int
    outside: int
    count: int


def node_maps(own: int, ranges: list[SubIdRange], user: str) -> list[IdMap]:
    """Map 0 to ``own`` and 1… to the user's first subordinate range (at most 65536 ids)."""
    mine = [r for r in ranges if r.owner in (user, str(own))]
    if not mine:
        raise FailedPrecondition(
            f"{user} has no subordinate ids: run `make setup` as root (or add '{user}:100000:65536' "
            "to /etc/subuid and /etc/subgid)"
        )
    first = mine[0]
    return [IdMap(0, own, 1), IdMap(1, first.start, min(first.count, MIN_SUBIDS))]


def in_node_namespace() -> bool:
    return os.environ.get(INSIDE_ENV) == "1"


def _ns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino
    except OSError:
        return None


def _live_pause(pid_file: Path) -> int | None:
    """The recorded pause pid if that process still holds the recorded namespace."""
    try:
        pid_text, ino_text = pid_file.read_text().split()
        pid, ino = int(pid_text), int(ino_text)
    except (OSError, ValueError):
        return None
    if _ns_inode(pid) != ino or ino == _ns_inode("self"):
        return None
    return pid


def _start_pause(pid_file: Path) -> int:
    """Fork a child that unshares user+mount namespaces, map its ids, exec ``sleep infinity``."""
    user = pwd.getpwuid(os.getuid()).pw_name
    uid_maps = node_maps(os.getuid(), parse_subid(Path("/etc/subuid").read_text()), user)
    gid_maps = node_maps(os.getgid(), parse_subid(Path("/etc/subgid").read_text()), user)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the pause process: no Python after this but the unshare and a wait
        try:
            os.close(ready_r)
            os.close(go_w)
            os.setsid()
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
                os._exit(3)
            os.write(ready_w, b"1")
            if os.read(go_r, 1) != b"1":
                os._exit(4)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execvp("sleep", ["sleep", "infinity"])
        finally:
            os._exit(5)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise FailedPrecondition("cannot create a user namespace: enable unprivileged user namespaces")
        for tool, maps in (("newuidmap", uid_maps), ("newgidmap", gid_maps)):
            args = [str(v) for m in maps for v in (m.inside, m.outside, m.count)]
            done = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
            if done.returncode != 0:
                os.kill(pid, 9)
                raise FailedPrecondition(f"{tool} failed: {done.stderr.strip() or done.returncode}")
        os.write(go_w, b"1")
    finally:
        os.close(ready_r)
        os.close(go_w)
    ino = _ns_inode(pid)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid} {ino}\n")
    tmp.replace(pid_file)
    return pid


def ensure_pause(state_dir: Path) -> int:
    """The pid of the live pause process for ``state_dir``, starting one when there is none."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / "pause.pid"
    return _live_pause(pid_file) or _start_pause(pid_file)


def reexec_inside(state_dir: Path, argv: list[str]) -> None:
    """Replace this process with ``argv`` running as root of the node namespace. Does not return.

    Must be called before any thread starts (joining a user namespace needs a single thread;
    nsenter does it in a fresh process, which exec makes this one).
    """
    pid = ensure_pause(state_dir)
    env = dict(os.environ, **{INSIDE_ENV: "1"})
    with contextlib.suppress(KeyError):
        del env["NOTIFY_SOCKET"]
    os.execvpe(
        "nsenter",
        ["nsenter", "-U", "-m", "-t", str(pid), "--preserve-credentials", "--", *argv],
        env,
    )


def end_node(state_dir: Path) -> None:
    """Kill what holds a runtime's node namespaces — containers still in them end with them.

    For whoever tears a node down on purpose (tests, benchmarks): the service never does, since
    its containers are meant to outlive it. A pid file naming some other command is left alone.
    Returns once they are gone (at most ~5 s), so a runtime started next makes a new namespace
    instead of entering a dying one.
    """
    killed = []
    for name, command in NODE_PID_FILES.items():
        try:
            pid = int((state_dir / name).read_text().split()[0])
            if Path(f"/proc/{pid}/comm").read_text().strip() == command:
                os.kill(pid, 9)
                killed.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    deadline = time.monotonic() + 5
    while any(_ns_inode(pid) is not None for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.01)  # a zombie has no namespaces any more: gone enough
