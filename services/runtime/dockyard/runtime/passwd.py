"""A container's user, resolved from its own /etc/passwd and /etc/group, and the id range checks.

Separate from the spec because it is the one place that reads the image's files, which are
untrusted (a symlink, FIFO or huge file must not get past :func:`resolve_user`), and because its
id bound (:func:`check_id`) is shared by the flag grammar and the spec.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

from dockyard.core.errors import InvalidArgument

#: Highest uid/gid a container may use: the node namespace maps 0…65535 (userns.node_maps).
MAX_ID = 65535
#: Bound on what is read from a container's /etc/passwd or /etc/group (and the node's etc files).
MAX_ETC_FILE = 1 << 20


class ResolvedUser(NamedTuple):
    uid: int
    gid: int
    additional_gids: tuple[int, ...]


def check_id(kind: str, value: int) -> int:
    """``value`` if it is a uid/gid (``kind``) this node maps, else InvalidArgument."""
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"{kind} {value} is outside the ids this node maps (0-{MAX_ID})")
    return value


def _read_etc(rootfs: Path, name: str) -> str | None:
    """``<rootfs>/etc/<name>`` as text, None when absent; never follows a symlink, reads ≤ 1 MiB.

    The rootfs is untrusted: /etc and the file are opened relative to each other with
    O_NOFOLLOW (a symlink is refused, not followed out of the tree), the file by O_PATH first so
    a FIFO or device is never opened, then re-opened for reading only if it is a regular file.
    """
    shown = f"/etc/{name}"
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            etc_fd = os.open("etc", dir_flags, dir_fd=root_fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(
                    "the image's /etc is not a directory (symlinks are not followed)"
                ) from None
            raise
        try:
            try:
                path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=etc_fd)
            except FileNotFoundError:
                return None
        finally:
            os.close(etc_fd)
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"the image's {shown} is not a regular file (symlinks are not followed)")
        if st.st_size > MAX_ETC_FILE:
            raise InvalidArgument(f"the image's {shown} is larger than {MAX_ETC_FILE} bytes")
        fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    finally:
        os.close(path_fd)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_ETC_FILE + 1)
    if len(data) > MAX_ETC_FILE:
        raise InvalidArgument(f"the image's {shown} is larger than {MAX_ETC_FILE} bytes")
    return data.decode("utf-8", "replace")


def _entries(text: str | None, fields: int) -> list[list[str]]:
    """The colon-separated lines with at least ``fields`` fields and a numeric third one."""
    out = []
    for line in (text or "").splitlines():
        parts = line.strip().split(":")
        if line.startswith("#") or len(parts) < fields or not parts[2].isdigit():
            continue
        out.append(parts)
    return out


def resolve_user(rootfs: Path, user: str) -> ResolvedUser:
    """``-u``/``USER`` (``name``, ``uid``, ``uid:gid``, ``name:group``; "" is root) → ids, as runc does.

    Reads the container's /etc/passwd and /etc/group only when a name must be resolved or a
    numeric uid's primary group and memberships are wanted (see :func:`_read_etc` for how safely).
    A user found in passwd gets its group from there and, unless a group is given, every group
    listing it as a member as additional gids; a numeric uid not in passwd gets gid 0. Every id
    must be within 0…65535, the node's mapped range.
    """
    user_part, _, group_part = (user or "0").partition(":")
    if not user_part:
        raise InvalidArgument(f"invalid user {user!r}")
    numeric_user = user_part.isdigit()
    numeric_group = group_part.isdigit()
    if numeric_user and numeric_group:
        return ResolvedUser(check_id("uid", int(user_part)), check_id("gid", int(group_part)), ())

    passwd = _entries(_read_etc(rootfs, "passwd"), 4)
    if numeric_user:
        uid = int(user_part)
        match = next((p for p in passwd if int(p[2]) == uid), None)
    else:
        match = next((p for p in passwd if p[0] == user_part), None)
        if match is None:
            raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")
        uid = int(match[2])
    name = match[0] if match else None
    gid = int(match[3]) if match and match[3].isdigit() else 0

    additional: list[int] = []
    if group_part and numeric_group:
        gid = int(group_part)
    elif group_part or name:
        groups = _entries(_read_etc(rootfs, "group"), 3)
        if group_part:
            found = next((g for g in groups if g[0] == group_part), None)
            if found is None:
                raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
            gid = int(found[2])
        else:
            for g in groups:
                members = g[3].split(",") if len(g) > 3 else []
                if name in members and int(g[2]) not in additional:
                    additional.append(int(g[2]))
    return ResolvedUser(
        check_id("uid", uid),
        check_id("gid", gid),
        tuple(check_id("gid", g) for g in additional),
    )
