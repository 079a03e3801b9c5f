"""The ``docker run`` flag grammar: ``--network``, ``--tmpfs``, ``-p`` and signal names,
parsed into the value types the rest of the runtime passes around (``-v`` and ``--mount``
are parsed by the client; :mod:`dockyard.runtime.mounts` holds what arrives).

Separate from :mod:`dockyard.runtime.ocispec` because far more than the spec needs these: the
records persist :class:`PortMapping`, the volume store hands out :class:`BindMount`, admission,
networks and the restart policy parse flags, and none of them should load the OCI spec to do so.
Pure, except :func:`bind_mount`, which checks that the host source exists.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import signal
from dataclasses import dataclass

from dockyard.core.errors import InvalidArgument
from dockyard.runtime.passwd import check_id

#: Options every --tmpfs mount starts from (moby's), before the user's own.
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev", "mode=1777")


class NetworkMode(enum.StrEnum):
    """How a container is networked."""

    NONE = "none"  # a new network namespace with only lo
    HOST = "host"  # the node namespace's network (no network namespace of its own)
    SLIRP4NETNS = "slirp4netns"  # a new network namespace, user-mode NAT to the host (the default)


def parse_network(mode: str) -> NetworkMode:
    """A ``--network`` value; "" / "bridge" / "default" mean slirp4netns, as rootless podman does."""
    if mode in ("", "bridge", "default"):
        return NetworkMode.SLIRP4NETNS
    try:
        return NetworkMode(mode)
    except ValueError:
        raise InvalidArgument(
            f"network {mode!r} is not supported: use none, host or slirp4netns (user networks come later)"
        ) from None


@dataclass(frozen=True, slots=True)
class BindMount:
    """``-v /host:/ctr[:ro]``: a host path bound recursively (rbind, rprivate) into the container."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class TmpfsMount:
    """``--tmpfs /run[:opts]``: ``options`` are final mount options (defaults merged in)."""

    target: str
    options: tuple[str, ...] = TMPFS_DEFAULTS


@dataclass(frozen=True, slots=True)
class PortMapping:
    """``-p [IP:][HOST:]CONTAINER[/proto]``; ``host_port`` 0 means "any free port"."""

    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""


_RT = re.compile(r"^RTM(IN|AX)([+-]\d+)?$")


def parse_signal(raw: str) -> int:
    """``"SIGTERM"``, ``"term"``, ``"15"``, ``"RTMIN+3"`` → the signal number; docker's "Invalid signal"."""
    text = raw.strip()
    if text.isdigit():
        number = int(text)
        if 1 <= number <= signal.SIGRTMAX:
            return number
        raise InvalidArgument(f"Invalid signal: {raw}")
    name = text.upper().removeprefix("SIG")
    rt = _RT.match(name)
    if rt:
        base = signal.SIGRTMIN if rt.group(1) == "IN" else signal.SIGRTMAX
        number = base + int(rt.group(2) or 0)
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
    elif f"SIG{name}" in signal.Signals.__members__:
        return int(signal.Signals[f"SIG{name}"])
    raise InvalidArgument(f"Invalid signal: {raw}")


def _container_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{path}' mount path must be absolute ({what})")
    clean = os.path.normpath(path)
    if clean == "/":
        raise InvalidArgument(f"invalid specification: destination can't be '/' ({what})")
    return clean


def bind_mount(source: str, target: str, read_only: bool = False) -> BindMount:
    """A bind mount, checked: absolute existing host source, absolute container target (not /)."""
    if not source.startswith("/"):
        raise InvalidArgument(f"a bind mount's source must be an absolute host path: {source!r}")
    if not os.path.exists(source):
        raise InvalidArgument(
            f'invalid mount config for type "bind": bind source path does not exist: {source}'
        )
    return BindMount(os.path.normpath(source), _container_path(target, f"-v {source}:{target}"), read_only)


_TMPFS_FLAG_PAIRS = {
    "exec": "noexec",
    "suid": "nosuid",
    "dev": "nodev",
    "rw": "ro",
    "atime": "noatime",
}
_TMPFS_KEYS = {
    "size": re.compile(r"^\d+[kKmMgG%]?$"),
    "nr_inodes": re.compile(r"^\d+[kKmMgG]?$"),
    "mode": re.compile(r"^[0-7]{3,4}$"),
    "uid": re.compile(r"^\d+$"),
    "gid": re.compile(r"^\d+$"),
}


def parse_tmpfs(spec: str) -> TmpfsMount:
    """``--tmpfs /run[:size=64m,mode=1777,…]`` → :class:`TmpfsMount`.

    Starts from docker's noexec,nosuid,nodev and mode=1777 (size unbounded, as docker's: half of
    RAM); the user's options replace a default of the same kind (``exec`` replaces ``noexec``).
    """
    target, _, opts = spec.partition(":")
    target = _container_path(target, f"--tmpfs {spec}")
    flags: dict[str, str] = {}  # kind → option, in order
    for option in (*TMPFS_DEFAULTS, *(o for o in opts.split(",") if o)):
        key, eq, value = option.partition("=")
        if eq:
            pattern = _TMPFS_KEYS.get(key)
            if pattern is None or not pattern.match(value):
                raise InvalidArgument(f"invalid tmpfs option {option!r} in --tmpfs {spec}")
            if key in ("uid", "gid"):
                check_id(key, int(value))
            flags[key] = option
            continue
        kind = next((k for k, v in _TMPFS_FLAG_PAIRS.items() if option in (k, v)), None)
        if kind is None:
            raise InvalidArgument(f"invalid tmpfs option {option!r} in --tmpfs {spec}")
        flags[kind] = option
    return TmpfsMount(target, tuple(flags.values()))


def _port(text: str, what: str, spec: str, allow_zero: bool = False) -> int:
    if "-" in text:
        raise InvalidArgument(f"port ranges are not supported yet: {spec}")
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise InvalidArgument(f"invalid {what}: {text or spec}")
    return int(text)


def parse_publish(spec: str) -> PortMapping:
    """``-p [IP:][HOST:]CONTAINER[/tcp|udp]`` (IPv6 in brackets) → :class:`PortMapping`."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() if proto else "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    ip = ""
    if rest.startswith("["):
        ip, sep, rest = rest[1:].partition("]:")
        if not sep:
            raise InvalidArgument(f"invalid IP address: {spec}")
    parts = rest.split(":")
    if ip and len(parts) != 2:
        raise InvalidArgument(f"invalid port specification: {spec!r}")
    if len(parts) == 3:
        ip, host, container = parts
    elif len(parts) == 2:
        host, container = parts
    elif len(parts) == 1:
        host, container = "", parts[0]
    else:
        raise InvalidArgument(f"invalid port specification: {spec!r}")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {ip}") from None
    if not container:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    return PortMapping(
        container_port=_port(container, "containerPort", spec),
        host_port=_port(host, "hostPort", spec) if host else 0,
        protocol=proto,
        host_ip=ip,
    )
