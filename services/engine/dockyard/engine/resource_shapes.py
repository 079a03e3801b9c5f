"""Docker's Engine API shapes of networks, volumes, events and disk usage; no I/O, no platform.

Pure, like :mod:`dockyard.engine.convert`, so what docker's CLI reads is tested without a platform.
The platform's default network is ``bridge`` already (slirp4netns per container, driver
``slirp4netns``): docker's users see it as the ``bridge`` driver, as on dockerd.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard.client import dockerjson
from dockyard.client.types import ContainerInfo, DiskUsage, Event, NetworkInfo, VolumeInfo
from dockyard.core.errors import InvalidArgument

Filters = Mapping[str, Sequence[str]]

# the built-in modes' drivers in docker's words (the runtime's bridge is slirp4netns)
_DOCKER_DRIVERS = {"slirp4netns": "bridge", "host": "host", "null": "null"}


def parse_filters(raw: str) -> dict[str, list[str]]:
    """docker's ``filters`` query, ``{"label": ["a=b"], "dangling": {"true": true}}``, as lists."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument(f"filters is not JSON: {raw!r}") from None
    if not isinstance(decoded, dict):
        raise InvalidArgument("filters must be a JSON object")
    found: dict[str, list[str]] = {}
    for key, values in decoded.items():
        items = [v for v, on in values.items() if on] if isinstance(values, dict) else values
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise InvalidArgument(f"filter {key!r} must list its values as strings")
        found[str(key)] = items
    return found


def check_filters(filters: Filters, allowed: Iterable[str], what: str) -> None:
    """InvalidArgument (docker's 400) for a filter key ``what`` does not take."""
    allowed = set(allowed)
    for key in filters:
        if key not in allowed:
            raise InvalidArgument(
                f"invalid filter {key!r} for {what} (want one of {', '.join(sorted(allowed))})"
            )


def _label_matches(labels: Mapping[str, str], wanted: Sequence[str]) -> bool:
    """docker's label filter: every ``k`` or ``k=v`` given must hold."""
    for want in wanted:
        key, sep, value = want.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _body(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _labels(body: Mapping[str, Any], key: str = "Labels") -> dict[str, str]:
    labels = body.get(key) or {}
    if not isinstance(labels, dict):
        raise InvalidArgument(f"{key} must be an object")
    return {str(k): str(v) for k, v in labels.items()}


# --- networks --------------------------------------------------------------------------------------


def network_driver(info: NetworkInfo) -> str:
    if info.builtin:
        return _DOCKER_DRIVERS.get(info.driver, info.driver)
    return info.driver or "bridge"


def network(info: NetworkInfo) -> dict[str, Any]:
    """``GET /networks/{id}`` and each entry of ``GET /networks`` (``docker network inspect``, ``ls``)."""
    return {
        "Name": info.name,
        "Id": info.id,
        "Created": dockerjson.iso_time(info.created),
        "Scope": "local",
        "Driver": network_driver(info),
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": info.subnet, "Gateway": info.gateway}] if info.subnet else [],
        },
        "Internal": False,
        "Attachable": not info.builtin,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {
            m.container_id: {
                "Name": m.container_name,
                "EndpointID": dockerjson.endpoint_id(m.container_id, info.id),
                "MacAddress": "",
                "IPv4Address": f"{m.ip}/{m.prefix_len}" if m.ip else "",
                "IPv6Address": "",
            }
            for m in info.members
        },
        "Options": {},
        "Labels": dict(info.labels),
    }


NETWORK_FILTERS = ("name", "id", "label", "driver", "type", "scope")


def network_matches(info: NetworkInfo, filters: Filters) -> bool:
    """``network ls --filter``: name and id match a part (id: a prefix), label ``k``/``k=v``, driver
    exactly, type ``custom``/``builtin``, scope ``local``; one key's values OR, keys AND."""
    check_filters(filters, NETWORK_FILTERS, "networks")
    tests = {
        "name": lambda v: v in info.name,
        "id": lambda v: info.id.startswith(v),
        "driver": lambda v: v == network_driver(info),
        "type": lambda v: v == ("builtin" if info.builtin else "custom"),
        "scope": lambda v: v == "local",
    }
    for key, values in filters.items():
        if key == "label":
            if not _label_matches(info.labels, values):
                return False
        elif values and not any(tests[key](v) for v in values):
            return False
    return True


@dataclass(frozen=True, slots=True)
class NetworkCreate:
    name: str
    driver: str  # "" for docker's bridge
    subnet: str
    gateway: str
    labels: Mapping[str, str]
    warning: str  # what was asked for and not done, docker's "Warning"


def network_create(body: Any) -> NetworkCreate:
    """``POST /networks/create``'s body; InvalidArgument for what the platform cannot do."""
    body = _body(body)
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("Name is required")
    driver = str(body.get("Driver") or "")
    if driver not in ("", "bridge"):
        raise InvalidArgument(f"network driver {driver!r} is not supported (only bridge)")
    if body.get("Internal"):
        raise InvalidArgument("internal networks are not supported")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("IPAM must be an object")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise InvalidArgument("IPAM.Config must be a list of objects")
    ipv4 = [c for c in configs if ":" not in str(c.get("Subnet") or "")]
    if len(ipv4) > 1 or len(ipv4) < len(configs):
        raise InvalidArgument("one IPv4 IPAM.Config entry at most")
    config = ipv4[0] if ipv4 else {}
    if config.get("IPRange") or config.get("AuxiliaryAddresses"):
        raise InvalidArgument("IPAM IPRange and AuxiliaryAddresses are not supported")
    options = body.get("Options") or {}
    warning = (
        f"driver options ignored: {', '.join(sorted(options))}"
        if isinstance(options, dict) and options
        else ""
    )
    return NetworkCreate(
        name=name,
        driver="",
        subnet=str(config.get("Subnet") or ""),
        gateway=str(config.get("Gateway") or ""),
        labels=_labels(body),
        warning=warning,
    )


def network_connect(body: Any) -> tuple[str, list[str], str]:
    """``POST /networks/{id}/connect``: the container, its aliases and its IPv4 address ("" any)."""
    body = _body(body)
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidArgument("Container is required")
    endpoint = body.get("EndpointConfig") or {}
    if not isinstance(endpoint, dict):
        raise InvalidArgument("EndpointConfig must be an object")
    aliases = endpoint.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidArgument("EndpointConfig.Aliases must be a list of strings")
    ipam = endpoint.get("IPAMConfig") or {}
    ip = str(ipam.get("IPv4Address") or "") if isinstance(ipam, dict) else ""
    return container, aliases, ip


def network_disconnect(body: Any) -> tuple[str, bool]:
    body = _body(body)
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidArgument("Container is required")
    return container, bool(body.get("Force"))


# --- volumes ---------------------------------------------------------------------------------------


def volume(info: VolumeInfo, usage: tuple[int, int] | None = None) -> dict[str, Any]:
    """``GET /volumes/{name}`` and each of ``GET /volumes``; with ``usage`` (size, users), system df's."""
    shape: dict[str, Any] = {
        "Name": info.name,
        "Driver": info.driver or "local",
        "Mountpoint": info.mountpoint,
        "CreatedAt": dockerjson.iso_time(info.created),
        "Labels": dict(info.labels),
        "Scope": "local",
        "Options": dict(info.options),
    }
    if usage is not None:
        shape["UsageData"] = {"Size": usage[0], "RefCount": usage[1]}
    return shape


VOLUME_FILTERS = ("name", "label", "dangling", "driver")


def volume_filters(filters: Filters) -> list[str]:
    """``volume ls --filter`` as the platform's ``key=value`` strings (it does the matching)."""
    check_filters(filters, VOLUME_FILTERS, "volumes")
    return [f"{key}={value}" for key, values in filters.items() for value in values]


def prune_all(filters: Filters) -> bool:
    """Whether a volume prune takes named volumes too: docker (API 1.42 on) prunes only anonymous
    ones unless ``all=true``."""
    return any(v.lower() in ("1", "true") for v in filters.get("all", ()))


def volume_create(body: Any) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """``POST /volumes/create``: name ("" anonymous), driver, labels, driver options."""
    body = _body(body)
    name = body.get("Name") or ""
    if not isinstance(name, str):
        raise InvalidArgument("Name must be a string")
    return name, str(body.get("Driver") or ""), _labels(body), _labels(body, "DriverOpts")


# --- events ----------------------------------------------------------------------------------------

DOCKER_TYPES = ("container", "image", "network", "volume")  # the areas docker's clients know


def _action(area: str, action: str, data: Mapping[str, Any]) -> str:
    if area == "image" and action == "removed":
        return "delete"
    if action == "health_status":
        return f"health_status: {data.get('status', '')}"
    if action == "exec":
        return "exec_start: " + " ".join(str(a) for a in data.get("command") or [])
    return dockerjson.DOCKER_ACTIONS.get(action, action)


def _attributes(area: str, event: Event) -> dict[str, str]:
    data = event.data
    found: dict[str, str] = dict(event.labels)
    if area == "container":
        found |= {"name": str(data.get("name", "")), "image": str(data.get("image", ""))}
        if "exitCode" in data:
            found["exitCode"] = str(data["exitCode"] if data["exitCode"] is not None else -1)
        if "signal" in data:
            found["signal"] = str(data["signal"])
        if "oldName" in data:
            found["oldName"] = str(data["oldName"])
    elif area == "network":
        found |= {"name": str(data.get("name", "")), "type": "bridge"}
        if data.get("container"):
            found["container"] = str(data["container"])
    elif area == "volume":
        found["driver"] = str(data.get("driver") or "local")
    elif area == "image":
        found["name"] = str(data.get("name") or event.subject)
    return found


def event_message(event: Event) -> dict[str, Any] | None:
    """One line of ``GET /events`` (``docker events``); None for the platform's own areas
    (registry, build, service), which docker's clients do not know."""
    parts = event.type.split(".")
    if len(parts) != 4 or parts[2] not in DOCKER_TYPES:
        return None
    area, action = parts[2], parts[3]
    moment = event.time or datetime.fromtimestamp(0, UTC)
    delta = moment - datetime.fromtimestamp(0, UTC)
    seconds = delta.days * 86400 + delta.seconds
    message: dict[str, Any] = {
        "Type": area,
        "Action": _action(area, action, event.data),
        "Actor": {"ID": event.subject, "Attributes": _attributes(area, event)},
        "scope": "local",
        "time": seconds,
        "timeNano": seconds * 1_000_000_000 + delta.microseconds * 1000,
    }
    if area in ("container", "image"):  # the old fields docker still sends for these two
        message |= {"status": message["Action"], "id": event.subject}
        if area == "container":
            message["from"] = message["Actor"]["Attributes"]["image"]
    return message


EVENT_FILTERS = ("type", "event", "container", "image", "label", "network", "volume", "scope")


def _prefix_of_actor(message: Mapping[str, Any], values: Sequence[str]) -> bool:
    actor = message["Actor"]
    name = actor["Attributes"].get("name", "")
    return any(actor["ID"].startswith(v) or (name and name.startswith(v)) for v in values)


def _strip_tag(reference: str) -> str:
    head, _, tail = reference.rpartition(":")
    return head if head and "/" not in tail else reference


def event_matches(message: Mapping[str, Any], filters: Filters) -> bool:
    """dockerd's event filter: each key given must match (its values OR); container, network and
    volume match the actor's id or name by prefix, for events of that type only."""
    attributes = message["Actor"]["Attributes"]
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and message["Type"] not in values:
            return False
        if key == "event" and not {message["Action"], message["Action"].split(":", 1)[0]} & set(values):
            return False
        if key in ("container", "network", "volume") and not (
            message["Type"] == key and _prefix_of_actor(message, values)
        ):
            return False
        if key == "image":
            name = attributes.get("name" if message["Type"] == "image" else "image", "")
            candidates = {message["Actor"]["ID"], name, _strip_tag(message["Actor"]["ID"]), _strip_tag(name)}
            if not candidates & set(values):
                return False
        if key == "label" and not _label_matches(attributes, values):
            return False
        if key == "scope" and "local" not in values:
            return False
    return True


def server_filters(filters: Filters) -> tuple[str, ...]:
    """What the platform's Subscribe can filter itself: the types (docker's are its areas)."""
    check_filters(filters, EVENT_FILTERS, "events")
    return tuple(f"type={t}" for t in filters.get("type") or DOCKER_TYPES)


_TIMESTAMP = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")


def event_time(value: str) -> datetime | None:
    """``since``/``until`` as docker's CLI sends them (``1700000000.123456789``), or RFC 3339."""
    if not value:
        return None
    if match := _TIMESTAMP.match(value):
        nanos = int((match[2] or "0").ljust(9, "0"))
        try:
            return datetime.fromtimestamp(int(match[1]), UTC).replace(microsecond=nanos // 1000)
        except (OverflowError, OSError, ValueError):
            raise InvalidArgument(f"timestamp {value!r} is out of range") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"bad timestamp {value!r}: want Unix seconds or RFC 3339") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- system df -------------------------------------------------------------------------------------


def disk_usage(
    usage: DiskUsage, containers: Sequence[ContainerInfo], volumes: Sequence[VolumeInfo], now: datetime
) -> dict[str, Any]:
    """``GET /system/df``. The platform measures the containers' writable layers together, not
    one by one, so each container's SizeRw is absent and docker's Containers SIZE is 0B; the
    build cache is the builder's RUN --mount=type=cache volumes."""
    images = [
        {**dockerjson.image_summary(u.image), "SharedSize": u.shared_size, "Containers": u.containers}
        for u in usage.images
    ]
    measured = {v.name: v for v in usage.volumes}
    local = [
        volume(v, (measured[v.name].size, measured[v.name].containers) if v.name in measured else (-1, -1))
        for v in volumes
        if not (v.name in measured and measured[v.name].build_cache)
    ]
    build_cache: list[dict[str, Any]] = [
        {
            "ID": v.name,
            "Parent": "",
            "Parents": [],
            "Type": "exec.cachemount",
            "Description": f"cache volume {v.name}",
            "InUse": v.containers > 0,
            "Shared": True,
            "Size": v.size,
            "CreatedAt": dockerjson.ZERO_TIME,
            "LastUsedAt": None,
            "UsageCount": v.containers,
        }
        for v in usage.volumes
        if v.build_cache
    ]
    return {
        "LayersSize": usage.images_size,
        "Images": images,
        "Containers": [dockerjson.container_summary(c, now) for c in containers],
        "Volumes": local,
        "BuildCache": build_cache,
    }
