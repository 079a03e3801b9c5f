"""Docker's JSON shapes of the client library's types: what the Engine API serves and what
``dockyard inspect`` prints, so jq scripts and ``--format`` templates written for docker read both.

Pure: no I/O, no platform; a shape is tested without one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from dockyard.client.grammar import Mount, Port
from dockyard.client.types import ContainerInfo, ImageInfo

ZERO_TIME = "0001-01-01T00:00:00Z"
#: docker's event action words for the platform's (docker's "events" reference); others keep ours.
DOCKER_ACTIONS = {
    "created": "create",
    "started": "start",
    "died": "die",
    "stopped": "stop",
    "killed": "kill",
    "paused": "pause",
    "unpaused": "unpause",
    "removed": "destroy",
    "renamed": "rename",
    "updated": "update",
    "exec": "exec_start",
    "connected": "connect",
    "disconnected": "disconnect",
    "imported": "import",
    "loaded": "load",
    "pulled": "pull",
    "pushed": "push",
    "tagged": "tag",
    "untagged": "untag",
    "committed": "commit",
}


def iso_time(moment: datetime | None) -> str:
    """RFC 3339 as docker writes it, ``Z`` for UTC; Go's zero time for none (its CLI parses it)."""
    return moment.isoformat().replace("+00:00", "Z") if moment else ZERO_TIME


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


def _status_line(info: ContainerInfo, now: datetime) -> str:
    """``docker ps``'s STATUS column: ``Up 3 minutes``, ``Exited (0) 2 seconds ago``."""
    if info.state == "paused":
        return f"Up {_ago(info.started, now)} (Paused)"
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
        "Created": iso_time(info.created),
        "Path": info.command[0] if info.command else "",
        "Args": list(info.command[1:]),
        "Image": info.image_id,
        "State": {
            "Status": info.state,
            "Running": info.state in ("running", "paused"),  # docker's: a paused one still runs
            "Paused": info.state == "paused",
            "Restarting": info.restarting,
            "OOMKilled": info.oom_killed,
            "Dead": info.state == "dead",
            "Pid": info.pid if info.state == "running" else 0,
            "ExitCode": info.exit_code,
            "Error": info.error,
            "StartedAt": iso_time(info.started),
            "FinishedAt": iso_time(info.finished),
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
            "LogConfig": {"Type": "json-file", "Config": dict(info.log_opts)},
            "RestartPolicy": restart_policy_shape(info.restart_policy),
            **_host_settings(info),
        },
        "NetworkSettings": network_settings(info, ports),
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
        "Created": iso_time(info.created),
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


def restart_policy_shape(policy: str) -> dict[str, Any]:
    """The platform's ``on-failure:3`` as docker's ``{"Name": "on-failure", "MaximumRetryCount": 3}``."""
    name, _, count = policy.partition(":")
    return {"Name": name or "no", "MaximumRetryCount": int(count) if count.isdigit() else 0}


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
