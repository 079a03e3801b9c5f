"""Docker's shapes for the endpoints that reach inside a container (exec, stats, top, changes,
archive, prune, update); no I/O, so each is tested without a platform.
"""

from __future__ import annotations

import base64
import json
import re
import stat
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dockyard.client.types import Change, ContainerInfo, ContainerStats, ExecOptions, Limits, TopResult
from dockyard.core.errors import InvalidArgument

STAT_HEADER = "X-Docker-Container-Path-Stat"
_NS = 1_000_000_000
_SAMPLE_NS = _NS  # the runtime's stats interval: cpu_percent is over about one second


# --- exec ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """``POST /containers/{id}/exec``'s body: what to run and which streams the client attaches."""

    options: ExecOptions
    stdin: bool
    stdout: bool
    stderr: bool


def console_size(body: Mapping[str, Any]) -> tuple[int, int]:
    """``ConsoleSize: [rows, cols]`` (docker's CLI sends it with a TTY); (0, 0) when absent."""
    size = body.get("ConsoleSize")
    if not size:
        return 0, 0
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n >= 0 for n in size)):
        raise InvalidArgument("ConsoleSize must be [height, width]")
    return size[0], size[1]


def exec_request(body: Any, container_id: str) -> ExecRequest:
    """InvalidArgument for a malformed body; ``Privileged`` is ignored (the platform is rootless)."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    command = body.get("Cmd")
    if isinstance(command, str):
        command = [command]
    if not command:
        raise InvalidArgument("No exec command specified")
    if not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        raise InvalidArgument("Cmd must be a list of strings")
    env_entries = body.get("Env") or []
    if not (isinstance(env_entries, list) and all(isinstance(e, str) for e in env_entries)):
        raise InvalidArgument("Env must be a list of KEY=VALUE strings")
    # "KEY" alone is a variable docker's CLI found unset: the process does not get it either
    env = dict(e.split("=", 1) for e in env_entries if "=" in e and not e.startswith("="))
    rows, cols = console_size(body)
    stdin = bool(body.get("AttachStdin"))
    options = ExecOptions(
        container=container_id,
        command=command,
        env=env,
        user=str(body.get("User") or ""),
        workdir=str(body.get("WorkingDir") or ""),
        tty=bool(body.get("Tty")),
        interactive=stdin,
        rows=rows,
        cols=cols,
    )
    return ExecRequest(options, stdin, bool(body.get("AttachStdout")), bool(body.get("AttachStderr")))


def exec_inspect(
    exec_id: str, request: ExecRequest, *, running: bool, exit_code: int | None, pid: int = 0
) -> dict[str, Any]:
    """``GET /exec/{id}/json``: ExitCode is null until the process has ended."""
    command = list(request.options.command)
    return {
        "ID": exec_id,
        "ContainerID": request.options.container,
        "Running": running,
        "ExitCode": exit_code,
        "Pid": pid,
        "OpenStdin": request.stdin,
        "OpenStdout": request.stdout,
        "OpenStderr": request.stderr,
        "CanRemove": False,
        "DetachKeys": "",
        "ProcessConfig": {
            "tty": request.options.tty,
            "entrypoint": command[0],
            "arguments": command[1:],
            "privileged": False,
            "user": request.options.user,
        },
    }


# --- stats, top, changes ---------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stats_json(s: ContainerStats, online_cpus: int) -> dict[str, Any]:
    """``GET /containers/{id}/stats``: one sample as dockerd writes it.

    The platform measures CPU as a percentage of one CPU over the last second, and the host's CPU
    time is not on the wire: ``system_cpu_usage`` is wall-clock time times ``online_cpus``, and
    ``precpu_stats`` is one second before, so docker's own formula
    ``Δtotal / Δsystem * online_cpus * 100`` gives back that percentage (and two samples of a
    stream give the CPU used between them).
    """
    read = s.read or datetime.now(UTC)
    system = int(read.timestamp() * _NS) * online_cpus
    used = int(s.cpu_percent / 100 * _SAMPLE_NS)

    def cpu(total: int, system_usage: int) -> dict[str, Any]:
        return {
            "cpu_usage": {"total_usage": total, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system_usage,
            "online_cpus": online_cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }

    def io(op: str, value: int) -> dict[str, Any]:
        return {"major": 0, "minor": 0, "op": op, "value": value}

    pids: dict[str, int] = {"current": s.pids}
    if s.pids_limit:
        pids["limit"] = s.pids_limit
    return {
        "id": s.id,
        "name": f"/{s.name}",
        "read": _iso(read),
        "preread": _iso(read - timedelta(seconds=1)),
        "cpu_stats": cpu(s.cpu_total_ns, system),
        "precpu_stats": cpu(max(0, s.cpu_total_ns - used), system - _SAMPLE_NS * online_cpus),
        # the runtime's usage already leaves the inactive page cache out, as docker's CLI would
        "memory_stats": {"usage": s.memory_usage, "limit": s.memory_limit, "stats": {}},
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": [io("read", s.block_read_bytes), io("write", s.block_write_bytes)]
        },
        "networks": {
            "eth0": {
                "rx_bytes": s.net_rx_bytes,
                "rx_packets": 0,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": s.net_tx_bytes,
                "tx_packets": 0,
                "tx_errors": 0,
                "tx_dropped": 0,
            }
        },
        "num_procs": 0,
        "storage_stats": {},
    }


def top_json(top: TopResult) -> dict[str, Any]:
    return {"Titles": list(top.titles), "Processes": [list(p) for p in top.processes]}


_KINDS = {"C": 0, "A": 1, "D": 2}  # docker's ChangeType: modified, added, deleted


def changes_json(changes: Iterable[Change]) -> list[dict[str, Any]]:
    return [{"Path": c.path, "Kind": _KINDS[c.kind]} for c in changes]


# --- archive ---------------------------------------------------------------------------------------------

# Go's os.FileMode type bits (docker's stat is Go's): the permission bits stay as they are.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_NAMED_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHAR_DEVICE = 1 << 21
_GO_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """A Unix ``st_mode`` as Go's os.FileMode (what docker's CLI reads: ModeDir is 1<<31)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFBLK: _GO_DEVICE,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHAR_DEVICE,
        stat.S_IFIFO: _GO_NAMED_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
    }.get(kind, 0)
    for unix, go in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if st_mode & unix:
            mode |= go
    return mode


def path_stat(name: str, size: int, st_mode: int, mtime: datetime, link_target: str = "") -> dict[str, Any]:
    """docker's ContainerPathStat."""
    return {
        "name": name,
        "size": size,
        "mode": go_file_mode(st_mode),
        "mtime": _iso(mtime),
        "linkTarget": link_target,
    }


_TAR_KINDS = {
    tarfile.DIRTYPE: stat.S_IFDIR,
    tarfile.SYMTYPE: stat.S_IFLNK,
    tarfile.CHRTYPE: stat.S_IFCHR,
    tarfile.BLKTYPE: stat.S_IFBLK,
    tarfile.FIFOTYPE: stat.S_IFIFO,
}


def tar_path_stat(member: tarfile.TarInfo) -> dict[str, Any]:
    """The stat of what the first member of a copy's tar is (the copied path itself)."""
    st_mode = _TAR_KINDS.get(member.type, stat.S_IFREG) | (member.mode & 0o7777)
    name = member.name.rstrip("/").rsplit("/", 1)[-1] or "/"
    return path_stat(name, member.size, st_mode, datetime.fromtimestamp(member.mtime, UTC), member.linkname)


def path_stat_header(path_stat: Mapping[str, Any]) -> str:
    """The X-Docker-Container-Path-Stat header: the stat as JSON, in standard base64 (docker's CLI
    and docker-py decode it so)."""
    return base64.b64encode(json.dumps(dict(path_stat)).encode()).decode()


def missing_file(path: str, container: str) -> str:
    """dockerd's words for a path that is not in the container (docker's CLI prints them)."""
    return f"Could not find the file {path} in container {container}"


# --- prune, update ---------------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:h|ms|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def until_cutoff(value: str, now: datetime) -> datetime:
    """docker's ``until``: a Go duration before now (``10m``, ``1h30m``), a Unix timestamp, or an
    RFC 3339 date/time."""
    if _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(value))
        return now - timedelta(seconds=seconds)
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"invalid until filter {value!r}: want a duration (10m), timestamp or date"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _label_match(labels: Mapping[str, str], want: str) -> bool:
    key, has_value, value = want.partition("=")
    return key in labels and (not has_value or labels[key] == value)


def prune_filter(filters: Iterable[str], now: datetime) -> Callable[[ContainerInfo], bool]:
    """Which stopped containers ``POST /containers/prune`` removes under docker's filters
    (``until=``, ``label=K[=V]``, ``label!=K[=V]``, each ``key=value`` as containers.filters gives)."""
    cutoffs: list[datetime] = []
    labels: list[str] = []
    not_labels: list[str] = []
    for item in filters:
        key, _, value = item.partition("=")
        if key == "until":
            cutoffs.append(until_cutoff(value, now))
        elif key == "label":
            labels.append(value)
        elif key == "label!":
            not_labels.append(value)
        else:
            raise InvalidArgument(f"invalid filter {key!r}")

    def wanted(info: ContainerInfo) -> bool:
        if info.state not in ("created", "exited", "dead"):
            return False
        if any(info.created is None or info.created >= cutoff for cutoff in cutoffs):
            return False
        if not all(_label_match(info.labels, want) for want in labels):
            return False
        return not any(_label_match(info.labels, want) for want in not_labels)

    return wanted


def _whole(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{key} must be an integer")
    return value


def update_resources(body: Any) -> Limits:
    """``POST /containers/{id}/update``'s limits; docker's 0 means "unchanged", except PidsLimit,
    whose 0 (or -1) lifts the limit."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    nano = _whole(body, "NanoCpus") or None
    quota = _whole(body, "CpuQuota") or 0
    if quota > 0:
        if nano:
            raise InvalidArgument("conflicting options: NanoCpus and CpuQuota cannot both be set")
        period = _whole(body, "CpuPeriod") or 100_000
        nano = quota * _NS // period
    pids = _whole(body, "PidsLimit")
    return Limits(
        memory=_whole(body, "Memory") or None,
        memory_swap=_whole(body, "MemorySwap") or None,
        nano_cpus=nano,
        cpu_shares=_whole(body, "CpuShares") or None,
        pids_limit=None if pids is None else (-1 if pids <= 0 else pids),
    )


def restart_policy_name(body: Mapping[str, Any]) -> str:
    """The restart policy an update asks for ("" when none: docker's CLI always sends an empty one)."""
    policy = body.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("RestartPolicy must be an object")
    return str(policy.get("Name") or "")
