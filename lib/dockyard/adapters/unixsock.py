"""Unix sockets under the platform's access rules: claimed safely, born private, then opened to a group.

The gRPC server (which binds the socket itself) and the Docker Engine API (which binds its own)
share these, so "who may connect" is decided in one place: the file is created under umask 0177
and only then given its group and mode, so nobody outside them ever reaches it.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import stat
from pathlib import Path

import structlog

log = structlog.get_logger("dockyard.unixsock")

UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


def claim(path: Path) -> None:
    """Make ``path`` bindable: parent present, short enough, no live server on it.

    A socket file nobody answers on (its process died) is removed; a live one raises OSError,
    because binding over it would steal the address from the running server.
    """
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise OSError(f"socket path {path} is longer than {UNIX_PATH_MAX} bytes: pick a shorter one")
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"cannot listen on {path}: it exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
            log.info("removing stale socket", path=str(path))
            path.unlink(missing_ok=True)
            return
    raise OSError(f"cannot listen on {path}: another server answers there")


def open_to(path: Path, mode: int, group: str | None) -> None:
    """Give a freshly bound socket its group (when we are a member) and mode."""
    try:
        os.chown(path, -1, group_id(group))
    except PermissionError:
        log.warning("not a member of the socket group", group=group, path=str(path))
    os.chmod(path, mode)


def group_id(name: str | None) -> int:
    if name is None:
        return -1
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        log.warning("socket group does not exist; keeping the process's group", group=name)
        return -1


def listen(path: Path, mode: int = 0o600, group: str | None = None, backlog: int = 128) -> socket.socket:
    """A listening unix socket at ``path``, reachable only by its owner and ``group`` (``mode``)."""
    claim(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    open_to(path, mode, group)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
