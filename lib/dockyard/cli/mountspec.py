"""``--mount`` and ``--volumes-from`` of ``create``/``run``: docker's syntax, into ContainerSpec mounts.

``--mount type=volume|bind|tmpfs,source=…,target=…[,readonly][,…]`` (comma-separated, fields may
be quoted as CSV; ``type`` defaults to volume, ``src``/``source``, ``dst``/``destination``/``target``,
``ro``/``readonly`` take an optional ``=true|false``). Keys by type: ``volume-nocopy`` (volume),
``tmpfs-size`` (bytes, or with a k/m/g suffix) and ``tmpfs-mode`` (octal) (tmpfs),
``bind-propagation=rprivate`` (bind; the only propagation there is here), ``consistency``
(ignored, as docker does on Linux). A mistake is InvalidArgument with one line naming the flag.

``--volumes-from CONTAINER[:ro|rw]`` passes through; the runtime resolves it at create.
Standard library only, as every CLI module at import time.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
from typing import Any, NamedTuple

_TRUE = ("", "1", "true")
_FALSE = ("0", "false")
_SIZE = re.compile(r"^(\d+)([kmgt]?)(i?b)?$", re.IGNORECASE)


class Mount(NamedTuple):
    type: str
    source: str
    target: str
    read_only: bool = False
    no_copy: bool = False
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="type=volume|bind|tmpfs,source=…,target=…",
        help="attach a filesystem mount (docker's --mount syntax)",
    )
    parser.add_argument(
        "--volumes-from",
        action="append",
        default=[],
        metavar="CONTAINER[:ro|rw]",
        help="mount every volume and bind of another container",
    )


def _bad(spec: str, why: str) -> Exception:
    from dockyard.core.errors import InvalidArgument

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


def apply(args: argparse.Namespace, spec: Any) -> None:
    """Add ``--mount`` and ``--volumes-from`` to the ContainerSpec ``spec``."""
    for item in args.mount:
        m = parse_mount(item)
        spec.mounts.add(
            type=m.type,
            source=m.source,
            target=m.target,
            read_only=m.read_only,
            no_copy=m.no_copy,
            tmpfs_size=m.tmpfs_size,
            tmpfs_mode=m.tmpfs_mode,
        )
    for item in args.volumes_from:
        ref, _, mode = item.partition(":")
        if not ref or mode not in ("", "ro", "rw"):
            from dockyard.core.errors import InvalidArgument

            raise InvalidArgument(f"invalid --volumes-from {item!r}: expected CONTAINER[:ro|rw]")
        spec.volumes_from.append(item)
