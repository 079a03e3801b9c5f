"""Docker's Engine API requests as the client library's options, and the protocol's small rules
(versions, stream frames, status codes); no I/O. The answers' shapes are
:mod:`dockyard.client.dockerjson`, shared with ``dockyard inspect``.
"""

from __future__ import annotations

import math
import platform
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard.client.grammar import Mount, Port
from dockyard.client.types import HealthCheck, Limits, RunOptions
from dockyard.core.errors import InvalidArgument

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"


def supported_version(version: str) -> bool:
    """``1.44`` from a ``/v1.44/…`` path: docker's clients down to 1.24, and newer ones (docker
    negotiates down to the server's ``API-Version``, but a pinned newer client still works)."""
    major, _, minor = version.partition(".")
    return major == "1" and minor.isdigit() and int(minor) >= 24


def _strings(body: Mapping[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{key} must be a list of strings")
    return value


def _env(entries: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        if not key:
            raise InvalidArgument(f"bad Env entry {entry!r}: want KEY=VALUE")
        env[key] = value
    return env


def _ports(body: Mapping[str, Any], host: Mapping[str, Any]) -> list[Port]:
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise InvalidArgument("HostConfig.PortBindings must be an object")
    ports: list[Port] = []
    for key, targets in bindings.items():
        number, _, protocol = str(key).partition("/")
        if not number.isdigit():
            raise InvalidArgument(f"bad port {key!r} in HostConfig.PortBindings")
        for target in targets or [{}]:
            host_port = str(target.get("HostPort") or "0")
            if not host_port.isdigit():
                raise InvalidArgument(f"bad HostPort {host_port!r} for {key}")
            ports.append(Port(target.get("HostIp") or "", int(host_port), int(number), protocol or "tcp"))
    return ports


def _mounts(host: Mapping[str, Any]) -> list[Mount]:
    mounts = []
    for item in host.get("Mounts") or []:
        if not isinstance(item, dict) or not item.get("Target"):
            raise InvalidArgument("each HostConfig.Mounts entry needs a Target")
        mounts.append(
            Mount(
                str(item.get("Type") or "volume"),
                str(item.get("Source") or ""),
                str(item["Target"]),
                bool(item.get("ReadOnly")),
            )
        )
    return mounts


def run_options(body: Any, name: str, platform: str = "") -> RunOptions:
    """``POST /containers/create``'s body as the client library's RunOptions (InvalidArgument for
    a malformed one). Docker's client pulls a missing image itself, so the engine never does."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidArgument("Image is required")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise InvalidArgument("HostConfig must be an object")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("Labels must be an object")
    network = host.get("NetworkMode") or ""
    return RunOptions(
        image=image,
        command=_strings(body, "Cmd") or (),
        name=name,
        env=_env(_strings(body, "Env") or []),
        labels={str(k): str(v) for k, v in labels.items()},
        ports=_ports(body, host),
        volumes=[*(_strings(host, "Binds") or ()), *_anonymous_volumes(body, host)],
        mounts=_mounts(host),
        entrypoint=_strings(body, "Entrypoint"),
        workdir=str(body.get("WorkingDir") or ""),
        user=str(body.get("User") or ""),
        network="" if network in ("default", "bridge") else str(network),
        hostname=str(body.get("Hostname") or ""),
        tty=bool(body.get("Tty")),
        read_only=bool(host.get("ReadonlyRootfs")),
        auto_remove=bool(host.get("AutoRemove")),
        pull="never",
        interactive=bool(body.get("OpenStdin")),
        publish_all=bool(host.get("PublishAllPorts")),
        restart_policy=_restart_policy(host.get("RestartPolicy") or {}),
        stop_signal=str(body.get("StopSignal") or ""),
        stop_timeout=body.get("StopTimeout") if isinstance(body.get("StopTimeout"), int) else None,
        dns=_strings(host, "Dns") or (),
        extra_hosts=_strings(host, "ExtraHosts") or (),
        network_aliases=_aliases(body, str(network)),
        healthcheck=_healthcheck(body.get("Healthcheck")),
        limits=_limits(host),
        tmpfs=_tmpfs(host.get("Tmpfs")),
        cap_add=_strings(host, "CapAdd") or (),
        cap_drop=_strings(host, "CapDrop") or (),
        privileged=bool(host.get("Privileged")),
        init=bool(host.get("Init")),
        platform=platform,
        log_opts=_log_opts(host.get("LogConfig")),
    )


#: docker's log drivers the platform's own log is (a rotated file that ``logs`` reads back)
LOG_DRIVERS = ("", "json-file", "local")


def _log_opts(config: Any) -> dict[str, str]:
    """``HostConfig.LogConfig``: its options (max-size, max-file) for a driver the platform is."""
    if not config:
        return {}
    if not isinstance(config, dict):
        raise InvalidArgument("HostConfig.LogConfig must be an object")
    driver = config.get("Type") or ""
    if driver not in LOG_DRIVERS:
        raise InvalidArgument(f"logging driver {driver!r} is not supported here (json-file or local)")
    options = config.get("Config") or {}
    if not isinstance(options, dict):
        raise InvalidArgument("HostConfig.LogConfig.Config must be an object")
    return {str(k): str(v) for k, v in options.items()}


def _healthcheck(check: Any) -> HealthCheck | None:
    """``Config.Healthcheck``: durations in nanoseconds, 0 (or absent) keeps the image's."""
    if not check:
        return None
    if not isinstance(check, dict):
        raise InvalidArgument("Healthcheck must be an object")
    seconds = {}
    for key, name in (
        ("Interval", "interval_s"),
        ("Timeout", "timeout_s"),
        ("StartPeriod", "start_period_s"),
    ):
        value = check.get(key) or 0
        if not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"Healthcheck.{key} must be a non-negative number of nanoseconds")
        seconds[name] = value / 1e9
    retries = check.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("Healthcheck.Retries must be a non-negative number")
    return HealthCheck(test=tuple(_strings(check, "Test") or ()), retries=retries, **seconds)


def _limits(host: Mapping[str, Any]) -> Limits | None:
    """HostConfig's limits; docker's 0 means unset. ``CpuQuota``/``CpuPeriod`` (compose's
    ``cpus`` on old API versions) become ``NanoCpus``."""
    values: dict[str, int | None] = {}
    for key, name in (
        ("Memory", "memory"),
        ("MemorySwap", "memory_swap"),
        ("NanoCpus", "nano_cpus"),
        ("CpuShares", "cpu_shares"),
        ("PidsLimit", "pids_limit"),
    ):
        value = host.get(key)
        if value is not None and not isinstance(value, int):
            raise InvalidArgument(f"HostConfig.{key} must be a number")
        values[name] = value or None
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 100_000
    if not isinstance(quota, int) or not isinstance(period, int) or period <= 0:
        raise InvalidArgument("HostConfig.CpuQuota and CpuPeriod must be positive numbers")
    if quota > 0 and values["nano_cpus"] is None:
        values["nano_cpus"] = quota * 1_000_000_000 // period
    if all(v is None for v in values.values()):
        return None
    return Limits(**values)


def _tmpfs(tmpfs: Any) -> tuple[str, ...]:
    """``HostConfig.Tmpfs``: ``{"/run": "size=64m"}`` as the platform's ``/run:size=64m``."""
    if not tmpfs:
        return ()
    if not isinstance(tmpfs, dict):
        raise InvalidArgument("HostConfig.Tmpfs must be an object of path to options")
    return tuple(f"{path}:{options}" if options else str(path) for path, options in tmpfs.items())


def _anonymous_volumes(body: Mapping[str, Any], host: Mapping[str, Any]) -> list[str]:
    """Config.Volumes, ``{"/scratch": {}}``: where docker's ``-v /scratch`` puts an anonymous volume,
    unless a bind, a mount or a tmpfs of HostConfig takes that path (docker-py sends both for
    ``volumes=[...], binds={...}``; dockerd lets HostConfig win)."""
    volumes = body.get("Volumes") or {}
    if not isinstance(volumes, dict):
        raise InvalidArgument("Volumes must be an object")
    taken = {_bind_target(bind) for bind in _strings(host, "Binds") or ()}
    taken |= {str(m.get("Target")) for m in host.get("Mounts") or () if isinstance(m, dict)}
    taken |= {str(path) for path in host.get("Tmpfs") or {}}
    return [str(target) for target in volumes if _clean(str(target)) not in {_clean(t) for t in taken}]


def _bind_target(bind: str) -> str:
    parts = bind.split(":")
    return parts[1] if len(parts) > 1 and parts[1].startswith("/") else parts[0]


def _clean(path: str) -> str:
    return path.rstrip("/") or "/"


def _restart_policy(policy: Any) -> str:
    """HostConfig.RestartPolicy ``{"Name": "on-failure", "MaximumRetryCount": 3}`` → ``on-failure:3``."""
    if not isinstance(policy, dict):
        raise InvalidArgument("HostConfig.RestartPolicy must be an object")
    name = str(policy.get("Name") or "")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy {name!r}")
    retries = policy.get("MaximumRetryCount") or 0
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def _aliases(body: Mapping[str, Any], network: str) -> list[str]:
    """The aliases docker's CLI and compose put under NetworkingConfig for the container's network."""
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict):
        raise InvalidArgument("NetworkingConfig.EndpointsConfig must be an object")
    settings = endpoints.get(network) or {}
    aliases = settings.get("Aliases") if isinstance(settings, dict) else None
    return [str(a) for a in aliases or []]


def frame(stream: str, data: bytes) -> bytes:
    """Docker's multiplexed stream: an 8-byte header (stream 1 stdout, 2 stderr; big-endian size)."""
    return struct.pack(">BxxxL", 2 if stream == "stderr" else 1, len(data)) + data


def status_for(exc: BaseException) -> int:
    """The HTTP status docker's API gives for one of the platform's errors."""
    code = getattr(exc, "code", "")
    return {
        "INVALID_ARGUMENT": 400,
        "OUT_OF_RANGE": 400,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "FAILED_PRECONDITION": 409,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "UNIMPLEMENTED": 501,
        "UNAVAILABLE": 503,
    }.get(code, 500)


@dataclass(frozen=True)
class LogWindow:
    """Which log lines ``GET /containers/{id}/logs`` answers: the last ``tail`` (0: all) of those
    written from ``since`` on, up to ``until``; None leaves that end open."""

    tail: int
    since: datetime | None
    until: datetime | None

    def before(self, moment: datetime | None) -> bool:
        return self.since is not None and moment is not None and moment < self.since

    def past(self, moment: datetime | None) -> bool:
        return self.until is not None and moment is not None and moment > self.until


def log_window(tail: str, since: str, until: str, now: datetime) -> LogWindow:
    """docker's ``tail`` (``all``, a count; ``0``: none of the past lines, only new ones with
    follow) and ``since``/``until`` (unix seconds, fractions allowed; 0 or absent: unbounded)."""
    start, end = _unix_time(since, "since"), _unix_time(until, "until")
    if tail == "0":
        return LogWindow(0, max(start, now) if start else now, end)
    return LogWindow(tail_count(tail), start, end)


def _unix_time(value: str, name: str) -> datetime | None:
    if value in ("", "0"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidArgument(f"bad {name} {value!r}: want unix seconds") from None
    if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:  # up to year 9999
        raise InvalidArgument(f"bad {name} {value!r}: want unix seconds")
    return datetime.fromtimestamp(seconds, UTC)


def tail_count(value: str) -> int:
    """``tail=all`` or a count; 0 means all, as in the client library."""
    if value in ("", "all"):
        return 0
    if not value.isdigit():
        raise InvalidArgument(f"bad tail {value!r}: want a number or all")
    return int(value)


def architecture() -> str:
    """The machine in Go's names (docker's ``Arch``): amd64, arm64…"""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
