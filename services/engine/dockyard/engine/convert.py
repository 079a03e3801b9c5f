"""Docker's Engine API shapes, from and to the client library's types; no I/O, no platform.

Every function here is pure so the shapes docker's CLI reads can be tested without a platform.
"""

from __future__ import annotations

import hashlib
import math
import platform
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard.client.grammar import Mount, Port
from dockyard.client.types import ContainerInfo, HealthCheck, ImageInfo, Limits, RunOptions
from dockyard.core.errors import InvalidArgument

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
_ZERO_TIME = "0001-01-01T00:00:00Z"


def supported_version(version: str) -> bool:
    """``1.44`` from a ``/v1.44/…`` path: docker's clients down to 1.24, and newer ones (docker
    negotiates down to the server's ``API-Version``, but a pinned newer client still works)."""
    major, _, minor = version.partition(".")
    return major == "1" and minor.isdigit() and int(minor) >= 24


def _iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else _ZERO_TIME


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


def _status_line(info: ContainerInfo, now: datetime) -> str:
    """``docker ps``'s STATUS column: ``Up 3 minutes``, ``Exited (0) 2 seconds ago``."""
    if info.state == "running":
        health = {"": "", "starting": " (health: starting)"}.get(info.health, f" ({info.health})")
        return f"Up {_ago(info.started, now)}{health}"
    if info.state == "exited":
        return f"Exited ({info.exit_code}) {_ago(info.finished, now)} ago"
    return info.state.capitalize()


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "Less than a second"
    seconds = int((now - moment).total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second"


def _port_key(port: Port) -> str:
    return f"{port.container_port}/{port.protocol or 'tcp'}"


def port_map(ports: tuple[Port, ...]) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: ``{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}``."""
    found: dict[str, list[dict[str, str]] | None] = {}
    for port in ports:
        bindings = found.setdefault(_port_key(port), [])
        if port.host_port and bindings is not None:
            bindings.append({"HostIp": port.host_ip or "0.0.0.0", "HostPort": str(port.host_port)})
    return {key: value or None for key, value in found.items()}


def _mount(mount: Mount) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "Type": mount.type,
        "Source": mount.source if mount.type == "bind" else "",
        "Destination": mount.target,
        "Mode": "ro" if mount.read_only else "",
        "RW": not mount.read_only,
        "Propagation": "rprivate" if mount.type == "bind" else "",
    }
    if mount.type == "volume":
        shape["Name"] = mount.source
        shape["Driver"] = "local"
    return shape


def _command(info: ContainerInfo) -> str:
    return " ".join(info.command)


# The platform's default network, bridge (slirp4netns per container): a fixed address and gateway
_DEFAULT_GATEWAY = "10.0.2.2"
_DEFAULT_PREFIX = 24


def network_mode(info: ContainerInfo) -> str:
    """HostConfig.NetworkMode as dockerd reports it: bridge for the default network."""
    return info.network if info.network not in ("", "default", "slirp4netns") else "bridge"


def endpoint_id(container_id: str, network_id: str) -> str:
    """A stable 64-hex EndpointID: the platform has no endpoint objects, docker's clients want one."""
    return hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()


def _endpoint(
    info: ContainerInfo, network_id: str, ip: str, prefix: int, gateway: str, aliases: list[str]
) -> dict[str, Any]:
    """One of NetworkSettings.Networks; a container that does not run has no address (as dockerd)."""
    if info.state not in ("running", "paused"):
        ip = ""
    user_network = network_id not in ("bridge", "host", "none")
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": aliases or None,
        "MacAddress": "",
        "DriverOpts": None,
        "NetworkID": network_id,
        "EndpointID": endpoint_id(info.id, network_id) if ip else "",
        "Gateway": gateway if ip else "",
        "IPAddress": ip,
        "IPPrefixLen": prefix if ip else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": [info.name, info.id[:12], *aliases] if ip and user_network else None,
    }


def networks(info: ContainerInfo) -> dict[str, dict[str, Any]]:
    """NetworkSettings.Networks: the container's built-in mode (bridge, with slirp4netns' address;
    host; none) unless it was made on a user network, and every user network it is on."""
    found: dict[str, dict[str, Any]] = {}
    mode = network_mode(info)
    user_ips = {n.ip for n in info.networks}
    if mode in ("bridge", "host", "none"):
        ip = info.ip_address if mode == "bridge" and info.ip_address not in user_ips else ""
        found[mode] = _endpoint(info, mode, ip, _DEFAULT_PREFIX, _DEFAULT_GATEWAY, [])
    for n in info.networks:
        found[n.network] = _endpoint(info, n.network_id, n.ip, n.prefix_len, n.gateway, list(n.aliases))
    return found


def network_settings(info: ContainerInfo, ports: dict[str, list[dict[str, str]] | None]) -> dict[str, Any]:
    """NetworkSettings of ``docker inspect``: Ports, the networks, and the primary network's address
    at the top (docker's deprecated fields, which scripts still read)."""
    found = networks(info)
    # a user network's container whose network is gone has none: an empty endpoint then
    primary = (
        found.get(network_mode(info))
        or next(iter(found.values()), None)
        or _endpoint(info, "", "", 0, "", [])
    )
    return {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "EndpointID": primary["EndpointID"],
        "Gateway": primary["Gateway"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": primary["IPAddress"],
        "IPPrefixLen": primary["IPPrefixLen"],
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": found,
    }


def container_summary(info: ContainerInfo, now: datetime) -> dict[str, Any]:
    """One entry of ``GET /containers/json`` (``docker ps``)."""
    return {
        "Id": info.id,
        "Names": [f"/{info.name}"],
        "Image": info.image,
        "ImageID": info.image_id,
        "Command": _command(info),
        "Created": _epoch(info.created),
        "State": info.state,
        "Status": _status_line(info, now),
        "Ports": [
            {
                "PrivatePort": p.container_port,
                "Type": p.protocol or "tcp",
                **({"IP": p.host_ip or "0.0.0.0", "PublicPort": p.host_port} if p.host_port else {}),
            }
            for p in info.ports
        ],
        "Labels": dict(info.labels),
        "Mounts": [_mount(m) for m in info.mounts],
        "HostConfig": {"NetworkMode": network_mode(info)},
        "NetworkSettings": {"Networks": networks(info)},
    }


def container_inspect(info: ContainerInfo) -> dict[str, Any]:
    """``GET /containers/{id}/json`` (``docker inspect``, ``docker port``)."""
    ports = port_map(info.ports)
    return {
        "Id": info.id,
        "Name": f"/{info.name}",
        "Created": _iso(info.created),
        "Path": info.command[0] if info.command else "",
        "Args": list(info.command[1:]),
        "Image": info.image_id,
        "State": {
            "Status": info.state,
            "Running": info.state == "running",
            "Paused": info.state == "paused",
            "Restarting": info.restarting,
            "OOMKilled": info.oom_killed,
            "Dead": info.state == "dead",
            "Pid": info.pid if info.state == "running" else 0,
            "ExitCode": info.exit_code,
            "Error": info.error,
            "StartedAt": _iso(info.started),
            "FinishedAt": _iso(info.finished),
            **({"Health": {"Status": info.health, "FailingStreak": 0, "Log": []}} if info.health else {}),
        },
        "RestartCount": info.restart_count,
        "Mounts": [_mount(m) for m in info.mounts],
        "Config": {
            "Image": info.image,
            "Cmd": list(info.command),
            "Entrypoint": list(info.entrypoint) or None,
            "Env": list(info.env),
            "WorkingDir": info.workdir,
            "User": info.user,
            "Hostname": info.hostname or info.id[:12],
            "Tty": info.tty,  # docker-py reads it to choose between raw and multiplexed logs
            "OpenStdin": info.interactive,
            "AttachStdin": info.interactive,
            "Labels": dict(info.labels),
            "ExposedPorts": {key: {} for key in ports},
            **_stop_and_health(info),
        },
        "HostConfig": {
            "NetworkMode": network_mode(info),
            "PortBindings": {
                key: [{"HostIp": b["HostIp"], "HostPort": b["HostPort"]} for b in value or []]
                for key, value in ports.items()
            },
            "Binds": [
                f"{m.source}:{m.target}{':ro' if m.read_only else ''}"
                for m in info.mounts
                if m.type == "bind"
            ],
            "AutoRemove": info.auto_remove,
            # docker-py's run reads the driver: json-file means "logs can be read back", as here
            "LogConfig": {"Type": "json-file", "Config": {}},
            "RestartPolicy": restart_policy_shape(info.restart_policy),
            **_host_settings(info),
        },
        "NetworkSettings": network_settings(info, ports),
    }


def _stop_and_health(info: ContainerInfo) -> dict[str, Any]:
    """Config's StopSignal, StopTimeout and Healthcheck, present when set at create (as dockerd)."""
    shape: dict[str, Any] = {}
    if info.stop_signal:
        shape["StopSignal"] = info.stop_signal
    if info.stop_timeout:
        shape["StopTimeout"] = info.stop_timeout
    check = info.healthcheck
    if check is not None:
        shape["Healthcheck"] = {
            "Test": list(check.test),
            "Interval": int(check.interval_s * 1e9),
            "Timeout": int(check.timeout_s * 1e9),
            "StartPeriod": int(check.start_period_s * 1e9),
            "Retries": check.retries,
        }
    return shape


def _host_settings(info: ContainerInfo) -> dict[str, Any]:
    """The rest of HostConfig: what the container was made with, and for what Dockyard does not
    offer (other namespaces' modes, cpusets, devices, runtimes) what it does, in dockerd's zero
    values, so a client reading a key finds docker's type there."""
    limits = info.limits
    tmpfs = {}
    for entry in info.tmpfs:
        path, _, options = entry.partition(":")
        tmpfs[path] = options
    return {
        "Memory": (limits and limits.memory) or 0,
        "MemorySwap": (limits and limits.memory_swap) or 0,
        "MemoryReservation": 0,
        "MemorySwappiness": None,
        "NanoCpus": (limits and limits.nano_cpus) or 0,
        "CpuShares": (limits and limits.cpu_shares) or 0,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpusetCpus": "",
        "CpusetMems": "",
        "PidsLimit": (limits and limits.pids_limit) or None,
        "Tmpfs": tmpfs or None,
        "CapAdd": list(info.cap_add) or None,
        "CapDrop": list(info.cap_drop) or None,
        "Privileged": info.privileged,
        "Init": info.init,
        "ReadonlyRootfs": info.read_only,
        "Dns": list(info.dns),
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": list(info.extra_hosts) or None,
        "GroupAdd": None,
        "Links": None,
        "VolumesFrom": None,
        "VolumeDriver": "",
        "PidMode": "",
        "IpcMode": "private",
        "UTSMode": "",
        "UsernsMode": "",
        "CgroupnsMode": "private",
        "Cgroup": "",
        "Devices": [],
        "DeviceCgroupRules": None,
        "SecurityOpt": None,
        "Isolation": "",
        "Runtime": "runc",
        "ShmSize": 67108864,
        "OomKillDisable": False,
    }


def image_summary(info: ImageInfo) -> dict[str, Any]:
    """One entry of ``GET /images/json`` (``docker images``)."""
    return {
        "Id": info.id,
        "ParentId": "",
        "RepoTags": list(info.tags),
        "RepoDigests": list(info.digests),
        "Created": _epoch(info.created),
        "Size": info.size,
        "SharedSize": -1,
        "Labels": dict(info.labels),
        "Containers": -1,
    }


def image_inspect(info: ImageInfo) -> dict[str, Any]:
    """``GET /images/{name}/json``: docker's capitalised Config from the OCI config document."""
    oci = info.config.get("config") or {}
    return {
        "Id": info.id,
        "RepoTags": list(info.tags),
        "RepoDigests": list(info.digests),
        "Created": _iso(info.created),
        "Size": info.size,
        "Architecture": info.config.get("architecture", ""),
        "Os": info.config.get("os", ""),
        "Config": {
            "Env": list(oci.get("Env") or []),
            "Cmd": oci.get("Cmd"),
            "Entrypoint": oci.get("Entrypoint"),
            "WorkingDir": oci.get("WorkingDir", ""),
            "User": oci.get("User", ""),
            "Labels": dict(oci.get("Labels") or info.labels),
            "ExposedPorts": dict(oci.get("ExposedPorts") or {}),
        },
        "RootFS": info.config.get("rootfs", {}),
    }


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


def run_options(body: Any, name: str) -> RunOptions:
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
    )


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


def restart_policy_shape(policy: str) -> dict[str, Any]:
    """The platform's ``on-failure:3`` as docker's ``{"Name": "on-failure", "MaximumRetryCount": 3}``."""
    name, _, count = policy.partition(":")
    return {"Name": name or "no", "MaximumRetryCount": int(count) if count.isdigit() else 0}


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
