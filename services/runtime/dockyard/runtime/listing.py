"""Which containers ``ps --filter`` lists: docker's filter keys and how they combine. Pure.

``label=KEY`` or ``label=KEY=VALUE``: every label filter must match (docker's rule, which compose
relies on to pick one service's containers). Any other key given twice matches either value;
different keys must all match. ``name=`` is a regular expression searched in the name (``web``
finds ``my-web-1``; ``^/web$`` is that name only, with docker's leading slash). ``id=`` is a
prefix, ``status=`` a state (created, running, paused, restarting, exited, dead), ``ancestor=``
the image as named at create or an id prefix, ``exited=`` an exit code, ``health=`` starting,
healthy, unhealthy or none, ``network=`` and ``volume=`` names, ``before=`` and ``since=``
another container. A ``status`` or ``exited`` filter lists stopped containers without ``-a``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dockyard.core.errors import InvalidArgument
from dockyard.core.oci import reference
from dockyard.runtime.mounts import Kind
from dockyard.runtime.records import ContainerRecord, State

KEYS = (
    "id", "name", "label", "status", "ancestor", "exited", "health", "network", "volume", "before",
    "since",
)  # fmt: skip
STATUSES = ("created", "running", "paused", "restarting", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")


@dataclass(frozen=True, slots=True)
class Filters:
    by_key: dict[str, list[str]]
    names: tuple[re.Pattern[str], ...]

    @property
    def lists_stopped(self) -> bool:
        """docker lists every container when it is asked for a status or an exit code."""
        return "status" in self.by_key or "exited" in self.by_key


def parse(raw: Iterable[str]) -> Filters:
    """``KEY=VALUE`` strings (InvalidArgument naming the first bad one)."""
    by_key: dict[str, list[str]] = {}
    for item in raw:
        key, eq, value = item.partition("=")
        if key not in KEYS or not eq:
            raise InvalidArgument(f"invalid filter {item!r}: use KEY=VALUE with KEY one of {', '.join(KEYS)}")
        if key == "status" and value not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}': one of {', '.join(STATUSES)}")
        if key == "health" and value not in HEALTH:
            raise InvalidArgument(f"invalid filter 'health={value}': one of {', '.join(HEALTH)}")
        if key == "exited" and not value.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={value}': an exit code")
        by_key.setdefault(key, []).append(value)
    names = []
    for pattern in by_key.get("name", ()):
        try:
            names.append(re.compile(pattern))
        except re.error as exc:
            raise InvalidArgument(f"invalid filter 'name={pattern}': {exc}") from None
    return Filters(by_key, tuple(names))


def _state(r: ContainerRecord) -> str:
    return "restarting" if r.restarting else str(r.state)


def _same_image(wanted: str, r: ContainerRecord) -> bool:
    bare = wanted.removeprefix("sha256:")
    if len(bare) >= 4 and r.image_id.removeprefix("sha256:").startswith(bare):
        return True
    try:
        return reference.normalize(wanted) == reference.normalize(r.config.image)
    except InvalidArgument:
        return wanted == r.config.image


def _label(wanted: str, r: ContainerRecord) -> bool:
    key, eq, value = wanted.partition("=")
    return key in r.config.labels and (not eq or r.config.labels[key] == value)


def select(
    records: Sequence[ContainerRecord], filters: Filters, find: Callable[[str], ContainerRecord]
) -> list[ContainerRecord]:
    """The records that pass ``filters``, in the order given; ``find`` looks up ``before=`` and
    ``since=``'s container (NotFound if none)."""
    tests: dict[str, Callable[[str, ContainerRecord], bool]] = {
        "id": lambda v, r: r.id.startswith(v),
        "status": lambda v, r: _state(r) == v,
        "ancestor": _same_image,
        "exited": lambda v, r: r.state is State.EXITED and r.exit_code == int(v),
        "health": lambda v, r: (r.health.get("Status") or "none") == v,
        "network": lambda v, r: r.config.network == v,
        "volume": lambda v, r: any(m.kind is Kind.VOLUME and m.source == v for m in r.config.mounts),
    }
    out = []
    for r in records:
        if filters.names and not any(p.search(r.name) or p.search(f"/{r.name}") for p in filters.names):
            continue
        if not all(_label(v, r) for v in filters.by_key.get("label", ())):
            continue
        if all(any(tests[k](v, r) for v in vs) for k, vs in filters.by_key.items() if k in tests):
            out.append(r)
    for key in ("before", "since"):
        for ref in filters.by_key.get(key, ()):
            pivot = find(ref).created
            out = [r for r in out if (r.created < pivot if key == "before" else r.created > pivot)]
    return out
