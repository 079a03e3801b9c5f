"""From ``docker run`` flags and an image config to an OCI runtime-spec ``config.json``.

The runtime service runs as root of the node's user namespace (:mod:`dockyard.runtime.userns`),
so containers share that user namespace, as rootless podman's do: the spec asks for new mount,
pid, ipc and uts namespaces and, unless ``--network host``, a network namespace, but never a user
namespace. What runc (1.1) or crun then does in a user namespace shapes a few choices here:

- device nodes cannot be made with mknod, so the runtime bind-mounts /dev/null, zero, full,
  random, urandom and tty from the host by itself. Rootless podman on this host (4.3 + runc)
  leaves ``linux.devices`` empty and relies on that; so do we.
- sysfs can only be mounted by the owner of the network namespace: with ``--network host`` /sys
  is a read-only recursive bind of the host's instead.
- the NOFILE rlimit cannot go above the hard limit the service itself has.
- a read-only bind of a host path whose mount is nosuid/nodev/noexec must repeat those flags
  (the kernel locks them), so they are copied from the source's mount.

The flow, each step a function a test can call alone::

    RunConfig (parsed flags)  ──merge_process(image config)──►  ProcessSpec
    ProcessSpec.user ──resolve_user(rootfs)──► uid, gid, additional gids
    etc_files(dir) ──► hosts, resolv.conf, hostname         load_seccomp() ──► linux.seccomp
    build_spec(...) ──► the config.json dict

The bundle written around it (by the caller)::

    <bundle>/
      config.json      build_spec(...), json.dumps'd
      etc/             etc_files(): hosts, resolv.conf, hostname (bind-mounted read-write,
                       read-only with --read-only)
    rootfs: the merged overlay directory, an absolute path outside the bundle

Everything here is pure except where it says it reads: :func:`resolve_user` (the container's
/etc/passwd and /etc/group, which are untrusted), :func:`load_seccomp` (the profile, once per
cap set and architecture), :func:`bind_mount`/:func:`parse_volume` (the host source must exist),
:func:`etc_files` (writes three files) and :func:`build_spec` (``getrlimit``, ``statvfs`` of bind
sources). Measured here: ``build_spec`` with a cached seccomp profile ≈ 0.02 ms a call (its
``json.dumps`` ≈ 0.08 ms more); converting the profile the first time ≈ 0.4 ms.
"""

from __future__ import annotations

import enum
import errno
import functools
import ipaddress
import json
import os
import platform
import re
import resource
import signal
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from dockyard.core.errors import FailedPrecondition, InvalidArgument

#: The OCI runtime-spec version the generated config.json declares.
OCI_VERSION = "1.0.2"
#: docker's default PATH, used when neither the image nor -e sets one.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: docker's default capability set (moby oci/caps/defaults.go), given in bounding/effective/permitted.
DEFAULT_CAPS: frozenset[str] = frozenset(
    {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    }
)  # fmt: skip
#: Highest uid/gid a container may use: the node namespace maps 0…65535 (userns.node_maps).
MAX_ID = 65535
#: podman's NOFILE limit; lowered to the service's own hard limit, which a userns cannot raise.
NOFILE_LIMIT = 1048576
#: The default seccomp profile, from Debian's containers-common.
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")
#: Bound on what is read from a container's /etc/passwd or /etc/group.
MAX_ETC_FILE = 1 << 20
#: docker's defaults: paths hidden (an empty bind or tmpfs) and paths remounted read-only.
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
#: slirp4netns's fixed addresses: the container, the host gateway, the DNS forwarder.
SLIRP_CONTAINER_IP = "10.0.2.100"
SLIRP_GATEWAY_IP = "10.0.2.2"
SLIRP_DNS_IP = "10.0.2.3"
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


@dataclass(frozen=True)
class RunConfig:
    """The flags of ``docker run`` after parsing, before the image config is merged in.

    Built from a gRPC ``ContainerSpec`` (or the persisted container config) field by field; lists
    are accepted and kept as tuples, ``tmpfs`` entries may be ``--tmpfs`` strings (parsed by
    :func:`parse_tmpfs`), ``network`` a ``--network`` string (:func:`parse_network`), so a bad
    value is InvalidArgument at construction. ``binds`` are :class:`BindMount` (see
    :func:`bind_mount`, :func:`parse_volume`, which check the host path). ``stop_signal`` stays
    a string until :func:`merge_process` parses it. ``image`` and ``name`` are not run flags.

    ``entrypoint``: None keeps the image's; ``()`` or ``("",)`` resets it (and the image's Cmd).
    A proto repeated field cannot say "unset", so map ``tuple(spec.entrypoint) or None`` and have
    the CLI send ``[""]`` for ``--entrypoint ""``. ``command`` None or empty means "not given".
    Empty strings mean "not given" for ``workdir``, ``user``, ``hostname`` and ``stop_signal``.
    ``cgroups_path`` and ``resources`` are the container's ``linux.cgroupsPath`` and
    ``linux.resources`` as :mod:`dockyard.runtime.cgroups` decided them ("" / empty: no cgroup).
    """

    command: Sequence[str] | None = ()
    entrypoint: Sequence[str] | None = None
    env: Sequence[str] = ()
    workdir: str = ""
    user: str = ""
    tty: bool = False
    interactive: bool = False
    hostname: str = ""
    read_only: bool = False
    tmpfs: Sequence[TmpfsMount | str] = ()
    binds: Sequence[BindMount] = ()
    network: NetworkMode | str = NetworkMode.SLIRP4NETNS
    ports: Sequence[PortMapping] = ()
    publish_all: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    stop_timeout: int = 10
    auto_remove: bool = False
    # --- resource limits (dockyard.runtime.cgroups) ---
    cgroups_path: str = ""
    resources: Mapping[str, Any] = field(default_factory=dict)
    # --- end resource limits ---

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("command", tuple(self.command or ()))
        put("entrypoint", None if self.entrypoint is None else tuple(self.entrypoint))
        put("env", tuple(self.env))
        put("tmpfs", tuple(parse_tmpfs(t) if isinstance(t, str) else t for t in self.tmpfs))
        put("binds", tuple(self.binds))
        put("network", parse_network(self.network))
        put("ports", tuple(self.ports))
        put("labels", dict(self.labels))

    @property
    def mounts_tmpfs(self) -> tuple[TmpfsMount, ...]:
        """``tmpfs`` as parsed mounts (always so after construction)."""
        return tuple(t for t in self.tmpfs if isinstance(t, TmpfsMount))

    @property
    def network_mode(self) -> NetworkMode:
        """``network`` as the enum (always so after construction)."""
        return NetworkMode(self.network)


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """The process a container runs, after docker's merge rules. ``user`` is still unresolved."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    terminal: bool
    open_stdin: bool
    stop_signal: int


class ResolvedUser(NamedTuple):
    uid: int
    gid: int
    additional_gids: tuple[int, ...]


# --- merging flags with the image config -------------------------------------------------------------


def _str_list(config: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"image config: {key} must be a list of strings")
    return tuple(value)


def _str(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key) or ""
    if not isinstance(value, str):
        raise InvalidArgument(f"image config: {key} must be a string")
    return value


def merge_env(*layers: Iterable[str]) -> tuple[str, ...]:
    """Merge ``KEY=value`` lists, later layers overriding earlier ones by key, first position kept.

    An entry without ``=`` removes the key (docker's rule for ``-e KEY`` with no value to take).
    """
    merged: dict[str, str] = {}
    for layer in layers:
        for entry in layer:
            key, eq, value = entry.partition("=")
            if not key or "\0" in entry:
                raise InvalidArgument(f"invalid environment variable: {entry!r}")
            if eq:
                merged[key] = value
            else:
                merged.pop(key, None)
    return tuple(f"{k}={v}" for k, v in merged.items())


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


def merge_process(image_config: Mapping[str, Any], run: RunConfig) -> ProcessSpec:
    """Merge an image config document with the run flags, by docker's rules.

    ``image_config`` is the image config's ``config`` object (Env, Entrypoint, Cmd, WorkingDir,
    User, StopSignal); the whole config document is accepted too (told apart by its lowercase
    ``config`` key, which the inner object never has).

    - args: ``--entrypoint`` (even an empty one) drops the image's Cmd; otherwise the image's
      Entrypoint stays and a given command replaces its Cmd. Entrypoint + Cmd empty →
      InvalidArgument "no command specified".
    - env: PATH=<docker's default> (and TERM=xterm with a tty), then the image's Env, then ``-e``,
      each overriding by key.
    - cwd: ``-w`` or the image's WorkingDir or "/"; it must be absolute.
    - user: ``-u`` or the image's User (resolved later, see :func:`resolve_user`).
    - stop signal: ``--stop-signal`` or the image's StopSignal or SIGTERM.
    """
    raw = image_config.get("config", image_config) if "config" in image_config else image_config
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidArgument("image config: config must be an object")
    image_entrypoint = _str_list(raw, "Entrypoint") or ()
    image_cmd = _str_list(raw, "Cmd") or ()

    if run.entrypoint is None:
        entrypoint, cmd = image_entrypoint, (tuple(run.command or ()) or image_cmd)
    else:
        entrypoint = () if tuple(run.entrypoint) in ((), ("",)) else tuple(run.entrypoint)
        cmd = tuple(run.command or ())
    args = (*entrypoint, *cmd)
    if not args:
        raise InvalidArgument("no command specified")

    base = [f"PATH={DEFAULT_PATH}"] + (["TERM=xterm"] if run.tty else [])
    env = merge_env(base, _str_list(raw, "Env") or (), run.env)

    cwd = run.workdir or _str(raw, "WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")

    stop = run.stop_signal or _str(raw, "StopSignal") or "SIGTERM"
    return ProcessSpec(
        args=args,
        env=env,
        cwd=os.path.normpath(cwd),
        user=run.user or _str(raw, "User"),
        terminal=run.tty,
        open_stdin=run.interactive,
        stop_signal=parse_signal(stop),
    )


# --- users, from the container's own files -----------------------------------------------------------


def _check_id(kind: str, value: int) -> int:
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
        return ResolvedUser(_check_id("uid", int(user_part)), _check_id("gid", int(group_part)), ())

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
        _check_id("uid", uid),
        _check_id("gid", gid),
        tuple(_check_id("gid", g) for g in additional),
    )


# --- flag parsers ------------------------------------------------------------------------------------


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
        raise InvalidArgument(f"named volumes are not supported yet: {source!r}")
    if not os.path.exists(source):
        raise InvalidArgument(
            f'invalid mount config for type "bind": bind source path does not exist: {source}'
        )
    return BindMount(os.path.normpath(source), _container_path(target, f"-v {source}:{target}"), read_only)


def parse_volume(spec: str) -> BindMount:
    """``-v /host:/ctr[:ro|rw]`` → :class:`BindMount`; named and anonymous volumes come later."""
    parts = spec.split(":")
    if len(parts) == 1:
        raise InvalidArgument(f"anonymous volumes are not supported yet: {spec!r}")
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    read_only = False
    if len(parts) == 3:
        modes = parts[2].split(",")
        for mode in modes:
            if mode not in ("ro", "rw", "z", "Z"):
                raise InvalidArgument(f"invalid mode: {mode} (in volume specification '{spec}')")
        read_only = "ro" in modes
    return bind_mount(parts[0], parts[1], read_only)


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
                _check_id(key, int(value))
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


# --- /etc/hosts, /etc/resolv.conf, /etc/hostname -----------------------------------------------------


class EtcFiles(NamedTuple):
    """Where :func:`etc_files` wrote the three files (unpacks as ``hosts, resolv, hostname``)."""

    hosts: Path
    resolv: Path
    hostname: Path


def _valid_hostname(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", name):
        raise InvalidArgument(f"invalid hostname: {name!r}")
    return name


def _read_host_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(MAX_ETC_FILE).decode("utf-8", "replace")
    except OSError:
        return ""


def etc_files(
    directory: Path,
    hostname: str,
    network: NetworkMode | str,
    extra_hosts: Sequence[str] = (),
    dns: Sequence[str] = (),
    *,
    host_resolv: Path = Path("/etc/resolv.conf"),
    host_hosts: Path = Path("/etc/hosts"),
) -> EtcFiles:
    """Write the container's hosts, resolv.conf and hostname into ``directory`` (created).

    - hosts: with ``--network host`` the node's own plus the extra hosts; else localhost, docker's
      IPv6 names, the container's hostname on its address (slirp4netns: 10.0.2.100; none:
      127.0.0.1) and the extra hosts (``--add-host name:ip``; ``host-gateway`` is the host:
      10.0.2.2 under slirp4netns).
    - resolv.conf: ``--dns`` when given; else slirp4netns's forwarder 10.0.2.3, the node's own
      file with ``--network host``, and nothing with ``--network none``.
    """
    _valid_hostname(hostname)
    network = parse_network(network)
    extra = []
    for entry in extra_hosts:
        name, sep, ip = entry.partition(":")
        if ip == "host-gateway":
            if network is not NetworkMode.SLIRP4NETNS:
                raise InvalidArgument(f"--add-host {entry}: host-gateway needs the slirp4netns network")
            ip = SLIRP_GATEWAY_IP
        try:
            ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
        if not sep or not name:
            raise InvalidArgument(f"bad format for add-host: {entry!r}")
        extra.append(f"{ip.strip('[]')}\t{_valid_hostname(name)}\n")
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{server} is not an ip address") from None

    if network is NetworkMode.HOST:
        own = _read_host_file(host_hosts)
        hosts = own + ("" if not own or own.endswith("\n") else "\n") + "".join(extra)
    else:
        address = SLIRP_CONTAINER_IP if network is NetworkMode.SLIRP4NETNS else "127.0.0.1"
        hosts = (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "ff00::0\tip6-mcastprefix\n"
            "ff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n"
            f"{address}\t{hostname}\n"
        ) + "".join(extra)
    if dns:
        resolv = "".join(f"nameserver {s}\n" for s in dns)
    elif network is NetworkMode.SLIRP4NETNS:
        resolv = f"nameserver {SLIRP_DNS_IP}\n"
    elif network is NetworkMode.HOST:
        resolv = _read_host_file(host_resolv)
    else:
        resolv = ""

    directory.mkdir(parents=True, exist_ok=True)
    files = EtcFiles(directory / "hosts", directory / "resolv.conf", directory / "hostname")
    for path, text in ((files.hosts, hosts), (files.resolv, resolv), (files.hostname, hostname + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    return files


# --- seccomp -----------------------------------------------------------------------------------------

#: uname -m (or Go's name) → (the arch name profiles use in includes/excludes, libseccomp's name).
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i386": ("x86", "SCMP_ARCH_X86"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "arm": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def _kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _rule_applies(rule: Mapping[str, Any], caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if arch in (excludes.get("arches") or ()):
        return False
    if not set(includes.get("caps") or ()) <= caps:
        return False
    if caps & set(excludes.get("caps") or ()):
        return False
    min_kernel = includes.get("minKernel")
    if min_kernel:
        m = re.match(r"(\d+)\.(\d+)", str(min_kernel))
        if m and kernel < (int(m.group(1)), int(m.group(2))):
            return False
    return True


def _convert_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
    out: dict[str, Any] = {"names": list(names), "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = int(rule["errnoRet"])
    if rule.get("args"):
        out["args"] = [
            {"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
            for a in rule["args"]
        ]
    return out


#: What docker's default profile (moby profiles/seccomp/default.json) allows only with CAP_SYS_ADMIN
#: and containers-common's allows to everyone. Unprivileged, the kernel refuses most of them in our
#: user namespace anyway; ``unshare``/``clone`` with CLONE_NEWUSER it does not: a nested user
#: namespace hands its creator every capability inside it, and the kernel surface that goes with.
_ADMIN_ONLY: frozenset[str] = frozenset(
    {
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    }
)  # fmt: skip
#: Never allowed, as in docker's profile: the kernel's key quota is per user, and every container
#: of the platform is the same host user, so one container joining keyrings starves all the others.
_NEVER: frozenset[str] = frozenset({"keyctl", "add_key", "request_key"})
#: clone(2) flags that make a namespace: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
_CLONE_NAMESPACES = 0x7E020000
_EPERM, _ENOSYS = 1, 38


def _align_with_docker(
    rules: list[dict[str, Any]], caps: frozenset[str], go_arch: str
) -> list[dict[str, Any]]:
    """containers-common's converted ``rules`` as docker's profile has them for ``caps``.

    Takes :data:`_NEVER` (and, without CAP_SYS_ADMIN, :data:`_ADMIN_ONLY`) out of every allow
    rule, then denies them with EPERM; without CAP_SYS_ADMIN ``clone`` stays allowed only when its
    flags make no namespace (docker's masked compare: the flags argument is the second on s390)
    and ``clone3``, whose flags seccomp cannot read, is ENOSYS so that libc falls back to clone.
    """
    gated = _NEVER if "CAP_SYS_ADMIN" in caps else _NEVER | _ADMIN_ONLY
    out: list[dict[str, Any]] = []
    for rule in rules:
        if rule["action"] == "SCMP_ACT_ALLOW" and gated & set(rule["names"]):
            names = [n for n in rule["names"] if n not in gated]
            if not names:
                continue
            rule = {**rule, "names": names}
        out.append(rule)
    unconditional = {n for r in out if not r.get("args") for n in r["names"]}
    denied = sorted(gated - unconditional - {"clone", "clone3"})
    if denied:
        out.append({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM})
    if "clone" in gated:
        index = 1 if go_arch in ("s390", "s390x") else 0
        out.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": index, "value": _CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            }
        )
        for bit in range(32):  # EPERM (not the default ENOSYS) for each namespace flag
            if _CLONE_NAMESPACES & (1 << bit):
                arg = {"index": index, "value": 1 << bit, "valueTwo": 1 << bit, "op": "SCMP_CMP_MASKED_EQ"}
                out.append(
                    {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM, "args": [arg]}
                )
        out.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return out


@functools.lru_cache(maxsize=32)
def _load_seccomp_cached(
    path: str, _mtime_ns: int, _size: int, caps: frozenset[str], arch: str, kernel: tuple[int, int]
) -> dict[str, Any]:
    go_arch, native = _ARCHES[arch]
    try:
        profile = json.loads(Path(path).read_bytes())
        architectures = [native]
        for entry in profile.get("archMap") or ():
            if entry["architecture"] == native:
                architectures += list(entry.get("subArchitectures") or ())
        if not profile.get("archMap") and profile.get("architectures"):
            architectures = list(profile["architectures"])
        out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": architectures}
        if profile.get("defaultErrnoRet") is not None:
            out["defaultErrnoRet"] = int(profile["defaultErrnoRet"])
        if profile.get("flags"):
            out["flags"] = list(profile["flags"])
        out["syscalls"] = _align_with_docker(
            [
                _convert_rule(rule)
                for rule in profile.get("syscalls") or ()
                if _rule_applies(rule, caps, go_arch, kernel)
            ],
            caps,
            go_arch,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FailedPrecondition(f"seccomp profile {path} is unusable: {e!r}") from e
    return out


def load_seccomp(
    path: Path = SECCOMP_PROFILE, *, caps: Iterable[str] = DEFAULT_CAPS, arch: str | None = None
) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object from a containers-common/moby profile, for these caps and arch.

    Rules whose ``includes`` (arches, every cap, minKernel) or ``excludes`` (arches, any cap) do
    not fit are dropped; ``archMap`` becomes ``architectures`` (native arch + its sub-arches).
    Where containers-common allows more than docker's default profile (keyrings; namespaces and
    mounts without CAP_SYS_ADMIN), docker's rules replace its own (:func:`_align_with_docker`).
    ``arch`` is ``uname -m`` (default: this machine's) or Go's name. Parsed once per (file
    version, caps, arch): later calls cost one ``stat``, and return the *same* dict, which callers
    must not mutate. An unreadable or malformed profile is FailedPrecondition.
    """
    arch = arch or platform.machine()
    if arch not in _ARCHES:
        raise InvalidArgument(f"seccomp: unsupported architecture {arch!r}")
    try:
        st = os.stat(path)
    except OSError as e:
        raise FailedPrecondition(
            f"seccomp profile {path} is missing ({e.strerror}): install containers-common"
        ) from e
    return _load_seccomp_cached(
        str(path), st.st_mtime_ns, st.st_size, frozenset(caps), arch, _kernel_version()
    )


# --- the spec ----------------------------------------------------------------------------------------


def _mount(destination: str, type_: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": type_, "source": source, "options": list(options)}


def _locked_flags(source: str) -> tuple[str, ...]:
    """nosuid/nodev/noexec of the mount holding ``source``: a userns cannot drop them on remount."""
    try:
        flags = os.statvfs(source).f_flag
    except OSError:
        return ()
    named = (("nosuid", os.ST_NOSUID), ("nodev", os.ST_NODEV), ("noexec", os.ST_NOEXEC))
    return tuple(name for name, bit in named if flags & bit)


def _nofile() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NOFILE_LIMIT if hard == resource.RLIM_INFINITY else min(NOFILE_LIMIT, hard)


def _resources(run: RunConfig) -> dict[str, Any]:
    """``linux.cgroupsPath`` and ``linux.resources`` for the run's limits.

    Nothing without a cgroups path (no writable cgroup on this node: runc in a user namespace
    then skips cgroups); the path alone when there are no limits (pause, stats, ``runc kill --all``
    still need the cgroup). :mod:`dockyard.runtime.cgroups` decides both.
    """
    if not run.cgroups_path:
        return {}
    out: dict[str, Any] = {"cgroupsPath": run.cgroups_path}
    if run.resources:
        out["resources"] = json.loads(json.dumps(run.resources))
    return out


def _depth(destination: str) -> int:
    return len(PurePosixPath(destination).parts)


def build_spec(
    process: ProcessSpec,
    rootfs: Path,
    run: RunConfig,
    *,
    uid: int,
    gid: int,
    gids: Sequence[int] = (),
    hostname: str,
    netns_path: str | None,
    hosts_file: Path,
    resolv_file: Path,
    hostname_file: Path,
    seccomp: Mapping[str, Any] | None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The OCI runtime-spec config.json (as a dict) for a container sharing the node's user namespace.

    - process: docker's default capabilities (bounding/effective/permitted), NOFILE at
      min(1048576, our hard limit), HOSTNAME in the env unless set, no_new_privs off (docker's).
    - mounts: /proc, /dev, /dev/pts (gid=5 — mapped here), /dev/shm (64m), /dev/mqueue, /sys
      (sysfs in a network namespace of our own, else a read-only rbind of the node's),
      /sys/fs/cgroup read-only, the three etc files, then the user's tmpfs and binds (parents
      first); a user mount replaces a default one at the same destination.
    - namespaces: pid, ipc, uts, mount, and network (joining ``netns_path`` when given) unless
      ``--network host``; never user.
    - ``seccomp`` is put in as given (see :func:`load_seccomp`); None leaves the container
      unconfined.
    """
    network_ns = run.network_mode is not NetworkMode.HOST
    etc_opts = ("rbind", "rprivate", "ro" if run.read_only else "rw")
    defaults = [
        _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro")
        if network_ns
        else _mount("/sys", "bind", "/sys", "rbind", "nosuid", "noexec", "nodev", "ro"),
        _mount(
            "/sys/fs/cgroup", "cgroup", "cgroup", "rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"
        ),
        _mount("/etc/hosts", "bind", str(hosts_file), *etc_opts),
        _mount("/etc/resolv.conf", "bind", str(resolv_file), *etc_opts),
        _mount("/etc/hostname", "bind", str(hostname_file), *etc_opts),
    ]
    user_mounts = [_mount(t.target, "tmpfs", "tmpfs", *t.options) for t in run.mounts_tmpfs]
    user_mounts += [
        _mount(
            b.target,
            "bind",
            b.source,
            "rbind",
            "rprivate",
            *_locked_flags(b.source),
            "ro" if b.read_only else "rw",
        )
        for b in run.binds
    ]
    taken = {m["destination"] for m in user_mounts}
    mounts = [m for m in defaults if m["destination"] not in taken]
    mounts += sorted(user_mounts, key=lambda m: _depth(m["destination"]))

    env = process.env
    if not any(e.startswith("HOSTNAME=") for e in env):
        env = (*env, f"HOSTNAME={hostname}")
    caps = sorted(DEFAULT_CAPS)
    user: dict[str, Any] = {"uid": _check_id("uid", uid), "gid": _check_id("gid", gid)}
    if gids:
        user["additionalGids"] = [_check_id("gid", g) for g in gids]

    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if network_ns:
        namespaces.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if seccomp is not None:
        linux["seccomp"] = seccomp
    linux.update(_resources(run))
    nofile = _nofile()
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": process.terminal,
            "user": user,
            "args": list(process.args),
            "env": list(env),
            "cwd": process.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": run.read_only},
        "hostname": _valid_hostname(hostname),
        "mounts": mounts,
        "annotations": {
            "org.opencontainers.image.stopSignal": str(process.stop_signal),
            **(annotations or {}),
        },
        "linux": linux,
    }
