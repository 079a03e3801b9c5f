"""Docker's Engine API shapes, from and to the client library's types; no I/O, no platform.

Every function here is pure so the shapes docker's CLI reads can be tested without a platform.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dockyard.client.grammar import Mount, Port
from dockyard.client.types import ContainerInfo, ImageInfo, RunOptions
from dockyard.core.errors import InvalidArgument

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_VERSION_PREFIX = re.compile(r"^/v1\.(\d+)(/.*)$")


def strip_version(path: str) -> str:
    """``/v1.44/containers/json`` → ``/containers/json``; unknown versions are refused."""
    match = _VERSION_PREFIX.match(path)
    if not match:
        return path
    if not 24 <= int(match.group(1)) <= 47:
        raise InvalidArgument(f"client version 1.{match.group(1)} is not supported (1.24 to 1.47)")
    return match.group(2)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else _ZERO_TIME


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


def _status_line(info: ContainerInfo, now: datetime) -> str:
    """``docker ps``'s STATUS column: ``Up 3 minutes``, ``Exited (0) 2 seconds ago``."""
    if info.state == "running":
        return f"Up {_ago(info.started, now)}"
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
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": {}},
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
            "Restarting": False,
            "OOMKilled": info.oom_killed,
            "Dead": info.state == "dead",
            "Pid": info.pid if info.state == "running" else 0,
            "ExitCode": info.exit_code,
            "Error": info.error,
            "StartedAt": _iso(info.started),
            "FinishedAt": _iso(info.finished),
        },
        "Mounts": [_mount(m) for m in info.mounts],
        "Config": {
            "Image": info.image,
            "Cmd": list(info.command),
            "Labels": dict(info.labels),
            "ExposedPorts": {key: {} for key in ports},
        },
        "HostConfig": {
            "NetworkMode": "default",
            "PortBindings": {
                key: [{"HostIp": b["HostIp"], "HostPort": b["HostPort"]} for b in value or []]
                for key, value in ports.items()
            },
            "Binds": [
                f"{m.source}:{m.target}{':ro' if m.read_only else ''}"
                for m in info.mounts
                if m.type == "bind"
            ],
            "AutoRemove": False,
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        },
        "NetworkSettings": {"Ports": ports, "Networks": {}},
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
        volumes=_strings(host, "Binds") or (),
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
    )


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


def tail_count(value: str) -> int:
    """``tail=all`` or a count; 0 means all, as in the client library."""
    if value in ("", "all"):
        return 0
    if not value.isdigit():
        raise InvalidArgument(f"bad tail {value!r}: want a number or all")
    return int(value)
