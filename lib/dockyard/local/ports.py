"""Is an address free for a listener, and if not, who holds it?

``dockyard up`` checks its TCP ports (NATS, the registry's HTTP, a TCP gateway) and the gateway's
unix socket before starting anything, so a second platform on the same ports fails at once with
one line instead of half-starting against the first one. A port ``up`` was not told to use
(:func:`default_port`) is different: when another user's process holds the default, ``up`` takes a
free one and keeps it for that state directory, so several users' platforms share a machine.

Who holds a port is read from /proc, as ``ss -ltnp`` does: the listening socket's inode and owner
uid from ``/proc/net/tcp{,6}`` (``/proc/net/unix`` for a socket path), then the process whose
``/proc/<pid>/fd`` links to that inode. Only processes of the same user (or all, as root) show
their descriptors; for others the owner's user name is what can be known.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path

from dockyard.core.errors import FailedPrecondition

_TCP_LISTEN = "0A"
_UNIX_ACCEPTING = 0x00010000  # __SO_ACCEPTCON in /proc/net/unix's Flags


@dataclass(frozen=True, slots=True)
class Holder:
    """Who listens somewhere: the owning user always, the process when we may see its descriptors."""

    uid: int | None
    pid: int | None = None
    command: str = ""

    def describe(self) -> str:
        user = _user_name(self.uid) if self.uid is not None else ""
        if self.pid is not None:
            about = ", ".join(part for part in (self.command, f"user {user}" if user else "") if part)
            return f"pid {self.pid} ({about})" if about else f"pid {self.pid}"
        return f"a process of user {user}" if user else "another process"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def tcp_in_use(host: str, port: int) -> bool:
    """Whether a listener on ``host:port`` would fail with EADDRINUSE now.

    Binds a throwaway socket with SO_REUSEADDR, as nats-server, aiohttp and gRPC do, so a port
    with only TIME_WAIT connections counts as free, exactly as it is for them.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]") or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def unix_in_use(path: Path) -> bool:
    """Whether a server answers on the unix socket ``path`` (a file nobody serves is stale, not in use)."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def tcp_holder(port: int) -> Holder | None:
    """Who listens on TCP ``port`` (any address), from /proc; None when nothing is found."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                return _holder_of(int(fields[9]), int(fields[7]))
    return None


def unix_holder(path: Path) -> Holder | None:
    """Who listens on the unix socket ``path``, from /proc/net/unix; None when nothing is found."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split(maxsplit=7)
        if len(fields) == 8 and fields[7] == str(path) and int(fields[3], 16) & _UNIX_ACCEPTING:
            try:
                uid: int | None = path.stat().st_uid
            except OSError:
                uid = None
            return _holder_of(int(fields[6]), uid)
    return None


def _holder_of(inode: int, uid: int | None) -> Holder:
    target = f"socket:[{inode}]"
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue  # gone, or not ours to look into
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) != target:
                        continue
                except OSError:
                    continue
                pid = int(entry.name)
                return Holder(uid if uid is not None else _owner(pid), pid, _command(pid))
    return Holder(uid)


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _command(pid: int) -> str:
    """A short name for a process: ``nats-server``, ``python3 -m dockyard.registry``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return ""
    if not argv or not argv[0]:
        return ""
    name = os.path.basename(argv[0])
    if len(argv) > 2 and argv[1] == "-m":
        return f"{name} -m {argv[2]}"
    return name


def require_tcp_free(host: str, port: int, what: str) -> None:
    """Raise FailedPrecondition, one line naming the port and its holder, when ``host:port`` is taken."""
    if not tcp_in_use(host, port):
        return
    holder = tcp_holder(port)
    who = holder.describe() if holder else "another process"
    raise FailedPrecondition(f"port {port} ({what}) on {host or '*'} is already in use by {who}")


def require_unix_free(path: Path, what: str) -> None:
    """Raise FailedPrecondition when a live server answers on the socket ``path``."""
    if not unix_in_use(path):
        return
    holder = unix_holder(path)
    who = holder.describe() if holder else "another process"
    raise FailedPrecondition(f"socket {path} ({what}) is already served by {who}")


def default_port(state_dir: Path, name: str, host: str, preferred: int) -> tuple[int, str]:
    """The port ``name`` (``nats``, ``registry``) listens on when no flag says: the one this state
    directory kept in ``ports.json``, else ``preferred``; when another user's process holds it, a
    free port, kept from then on (image names carry the registry's). Returns it and a line to tell
    the user ("" when it is the usual one). A port our own user holds is left for the usual
    one-line refusal: it is most likely this platform, already running."""
    kept_file = state_dir / "ports.json"
    try:
        loaded = json.loads(kept_file.read_text())
    except (OSError, ValueError):
        loaded = None
    kept: dict[str, int] = (
        {k: v for k, v in loaded.items() if isinstance(v, int)} if isinstance(loaded, dict) else {}
    )
    port = kept.get(name, preferred)
    if not tcp_in_use(host, port):
        return port, ("" if port == preferred else f"{name}: port {port}, kept for this state directory")
    holder = tcp_holder(port)
    if holder is None or holder.uid in (None, os.geteuid()):
        return port, ""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        chosen = int(probe.getsockname()[1])
    kept[name] = chosen
    tmp = kept_file.with_name(".ports.json.tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(kept) + "\n")
    os.replace(tmp, kept_file)
    return (
        chosen,
        f"{name}: port {port} is {holder.describe()}'s; using {chosen}, kept for this state directory",
    )
