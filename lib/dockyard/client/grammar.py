"""docker's grammars for ``-p``, ``-v`` and ``--mount``, parsed once, here, into typed values.

``-p [IP:][HOST:]CONTAINER[/tcp|udp|sctp]`` with ranges; ``-v SRC:DST[:ro|rw|nocopy]`` where SRC is
a host path (absolute, or starting with "." or "~") or a volume name, and ``-v DST`` an anonymous
volume; ``--mount type=volume|bind|tmpfs,source=…,target=…[,readonly][,…]`` (comma-separated,
fields may be quoted as CSV; ``type`` defaults to volume, ``src``/``source``,
``dst``/``destination``/``target``, ``ro``/``readonly`` take an optional ``=true|false``; keys by
type: ``volume-nocopy``, ``tmpfs-size`` (bytes or k/m/g), ``tmpfs-mode`` (octal),
``bind-propagation=rprivate``; ``consistency`` ignored, as docker does on Linux). A mistake is
InvalidArgument with one line naming the flag. Standard library only: the CLI imports it to parse.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from dockyard.core.errors import InvalidArgument


def parse_labels(values: list[str]) -> dict[str, str]:
    """``--label KEY=VALUE`` (a bare ``KEY`` is an empty value), the last of a key winning."""
    labels = {}
    for item in values:
        key, _, value = item.partition("=")
        labels[key] = value
    return labels


@dataclass(frozen=True, slots=True)
class Port:
    """One published port of ``-p``: host port 0 means any free one."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class Volume:
    """One ``-v``: a bind (``source`` an absolute host path) or a volume (a name, "" = anonymous)."""

    source: str
    target: str
    read_only: bool
    type: str
    no_copy: bool = False  # volumes: -v NAME:/path:nocopy leaves an empty volume empty


def _port_range(text: str, what: str, spec: str) -> list[int]:
    first, sep, last = text.partition("-")
    try:
        lo = int(first)
        hi = int(last) if sep else lo
    except ValueError:
        raise InvalidArgument(f"bad -p {spec!r}: {what} port {text!r} is not a number or range") from None
    if not (0 < lo <= hi <= 65535):
        raise InvalidArgument(f"bad -p {spec!r}: {what} port {text!r} is out of 1-65535")
    return list(range(lo, hi + 1))


def parse_publish(spec: str) -> list[Port]:
    """``-p``: CONTAINER, HOST:CONTAINER, IP:HOST:CONTAINER or IP::CONTAINER, each ``/tcp|udp|sctp``;
    ranges ("8000-8001:80-81") expand to one mapping per port. Host port 0 means any free port."""
    rest, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"bad -p {spec!r}: protocol must be tcp, udp or sctp")
    ip = ""
    if rest.startswith("["):  # [::1]:8080:80
        end = rest.find("]")
        if end < 0 or rest[end + 1 : end + 2] != ":":
            raise InvalidArgument(f"bad -p {spec!r}: expected [IPv6]:HOST:CONTAINER")
        ip, rest = rest[1:end], rest[end + 2 :]
        parts = rest.split(":")
        if len(parts) != 2:
            raise InvalidArgument(f"bad -p {spec!r}: expected [IPv6]:HOST:CONTAINER")
    else:
        parts = rest.split(":")
        if len(parts) == 3:
            ip = parts.pop(0)
        elif len(parts) > 3:
            raise InvalidArgument(f"bad -p {spec!r}: expected [IP:][HOST:]CONTAINER[/PROTO]")
    if not parts[-1]:
        raise InvalidArgument(f"bad -p {spec!r}: no container port")
    container = _port_range(parts[-1], "container", spec)
    host_text = parts[0] if len(parts) == 2 else ""
    host = _port_range(host_text, "host", spec) if host_text else [0] * len(container)
    if len(host) == 1 and len(container) > 1 and host_text:
        raise InvalidArgument(f"bad -p {spec!r}: a port range needs a host range of the same length")
    if len(host) != len(container):
        raise InvalidArgument(f"bad -p {spec!r}: host and container ranges differ in length")
    return [Port(ip, h, c, proto) for h, c in zip(host, container, strict=True)]


def parse_volume(spec: str, cwd: str | None = None) -> Volume:
    """``-v``: /host:/ctr[:ro|rw], ./rel:/ctr, name:/ctr (a named volume) or /ctr (anonymous)."""
    parts = spec.split(":")
    if not spec or "" in parts[:2] or (len(parts) == 3 and not parts[2]):
        raise InvalidArgument(f"bad -v {spec!r}: empty section between colons")
    if len(parts) == 1:
        source, target, opts = "", parts[0], ""
    elif len(parts) == 2 and parts[0].startswith("/") and not parts[1].startswith("/"):
        source, target, opts = "", parts[0], parts[1]  # volumes: "/ctr:ro", an anonymous volume
    elif len(parts) == 2:
        source, target, opts = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, opts = parts
    else:
        raise InvalidArgument(f"bad -v {spec!r}: expected SRC:DST[:OPTIONS]")
    if not target.startswith("/"):
        raise InvalidArgument(f"bad -v {spec!r}: the container path {target!r} must be absolute")
    read_only = no_copy = False
    for opt in filter(None, opts.split(",")):
        if opt == "ro":
            read_only = True
        elif opt == "nocopy" and not source.startswith((".", "/", "~")):  # volumes only
            no_copy = True
        elif opt not in ("rw", "z", "Z"):
            raise InvalidArgument(f"bad -v {spec!r}: unknown option {opt!r} (ro, rw, nocopy for a volume)")
    if not source:
        return Volume("", target, read_only, "volume", no_copy)
    if source.startswith((".", "/", "~")):
        path = os.path.expanduser(source)
        return Volume(os.path.normpath(os.path.join(cwd or os.getcwd(), path)), target, read_only, "bind")
    return Volume(source, target, read_only, "volume", no_copy)


_TRUE = ("", "1", "true")
_FALSE = ("0", "false")
_SIZE = re.compile(r"^(\d+)([kmgt]?)(i?b)?$", re.IGNORECASE)


class Mount(NamedTuple):
    """One ``--mount``."""

    type: str
    source: str
    target: str
    read_only: bool = False
    no_copy: bool = False
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


def _bad(spec: str, why: str) -> Exception:
    return InvalidArgument(f"invalid argument {spec!r} for --mount: {why}")


def _flag(spec: str, key: str, value: str | None) -> bool:
    text = (value or "").lower()
    if value is None or text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(spec, f"{key} takes true or false, not {value!r}")


def _size(spec: str, text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise _bad(spec, f"tmpfs-size {text!r} is not a size (e.g. 67108864, 64m, 1g)")
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " ")


def parse_mount(spec: str, cwd: str | None = None) -> Mount:
    """One ``--mount`` value → :class:`Mount` (targets and sources are checked again by the runtime)."""
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error as exc:
        raise _bad(spec, str(exc)) from None
    values: dict[str, Any] = {"type": "volume", "source": "", "target": ""}
    seen: dict[str, str | None] = {}
    for item in fields:
        key, eq, value = item.strip().partition("=")
        key = key.lower()
        raw = value if eq else None
        if key in ("type",):
            values["type"] = (raw or "").lower()
        elif key in ("source", "src"):
            values["source"] = raw or ""
        elif key in ("target", "destination", "dst"):
            values["target"] = raw or ""
        elif key in ("readonly", "ro"):
            values["read_only"] = _flag(spec, key, raw)
        elif key == "volume-nocopy":
            values["no_copy"] = _flag(spec, key, raw)
        elif key == "tmpfs-size":
            values["tmpfs_size"] = _size(spec, raw or "")
        elif key == "tmpfs-mode":
            if not raw or not re.fullmatch(r"0?[0-7]{1,4}", raw):
                raise _bad(spec, f"tmpfs-mode {raw!r} is not an octal mode (e.g. 1770)")
            values["tmpfs_mode"] = int(raw, 8)
        elif key == "bind-propagation":
            if raw not in ("rprivate", "private"):
                raise _bad(spec, f"bind-propagation {raw!r} is not supported (rprivate only)")
        elif key == "consistency":
            pass
        elif key == "volume-driver":
            if raw != "local":
                raise _bad(spec, f"volume driver {raw!r} is not supported (local only)")
        elif key in ("volume-label", "volume-opt", "volume-subpath", "bind-recursive", "bind-nonrecursive"):
            raise _bad(spec, f"{key} is not supported yet")
        elif not key:
            continue
        else:
            raise _bad(spec, f"unexpected key {key!r}")
        seen[key] = raw
    kind = values["type"]
    if kind not in ("volume", "bind", "tmpfs"):
        raise _bad(spec, f"mount type {kind!r} is not one of volume, bind, tmpfs")
    if not values["target"]:
        raise _bad(spec, "target is required")
    if not values["target"].startswith("/"):
        raise _bad(spec, f"the target {values['target']!r} must be an absolute path")
    for key, allowed in (("volume-nocopy", "volume"), ("tmpfs-size", "tmpfs"), ("tmpfs-mode", "tmpfs")):
        if key in seen and kind != allowed:
            raise _bad(spec, f"{key} only goes with type={allowed}")
    if "bind-propagation" in seen and kind != "bind":
        raise _bad(spec, "bind-propagation only goes with type=bind")
    source = values["source"]
    if kind == "bind":
        if not source:
            raise _bad(spec, "a bind needs a source (an absolute host path)")
        if source.startswith((".", "~")):
            source = os.path.normpath(os.path.join(cwd or os.getcwd(), os.path.expanduser(source)))
        if not source.startswith("/"):
            raise _bad(spec, f"the bind source {source!r} must be an absolute host path")
    elif kind == "tmpfs" and source:
        raise _bad(spec, "a tmpfs takes no source")
    elif kind == "volume" and source.startswith("/"):
        raise _bad(spec, f"a volume's source is a volume name, not a path ({source!r}): use type=bind")
    values["source"] = source
    return Mount(**values)
