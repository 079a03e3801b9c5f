"""Which images ``images`` lists: docker's hiding of intermediates and its ``--filter`` keys.

Pure: records in, records out. A build leaves one untagged image per layer-making step; docker
calls those *intermediate* (an untagged image another image is built on) and lists them only with
``-a``. An untagged image nothing is built on is *dangling* (``<none>:<none>``, what ``image
prune`` removes). The store keeps no parent links, so "built on" is read from the images: B is
built on A when A's layers begin B's and A's history is a proper beginning of B's. The history
tells a RUN step's image (its stage's end adds LABEL and CMD entries with no layer) from an older
build that a rebuild with another CMD left dangling (same layers, a history that differs).

Filters, as docker takes them (several values of one key: any may match; several keys: all must):
``dangling=true|false``, ``reference=PATTERN`` (``busybox``, ``team/*:1.*``; ``*`` stays within
one path component, as Go's path.Match), ``label=KEY`` or ``label=KEY=VALUE``, ``before=IMAGE``
and ``since=IMAGE`` (created before or after that image).
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from dockyard.core.errors import InvalidArgument

KEYS = ("dangling", "reference", "label", "before", "since")


class Image(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def repo_tags(self) -> tuple[str, ...]: ...
    @property
    def repo_digests(self) -> tuple[str, ...]: ...
    @property
    def created(self) -> str: ...
    @property
    def diff_ids(self) -> tuple[str, ...]: ...


ImageT = TypeVar("ImageT", bound=Image)


def parse_filters(raw: Iterable[str]) -> dict[str, list[str]]:
    """``key=value`` strings by key (InvalidArgument for an unknown key or a bad value)."""
    found: dict[str, list[str]] = defaultdict(list)
    for item in raw:
        key, eq, value = item.partition("=")
        if key not in KEYS:
            raise InvalidArgument(f"invalid filter {key!r} (images take {', '.join(KEYS)})")
        if not eq or not value:
            raise InvalidArgument(f"filter {key!r} needs a value ({key}=…)")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}': want true or false")
        found[key].append(value)
    return dict(found)


def _untagged(image: Image) -> bool:
    return not image.repo_tags and not image.repo_digests


def intermediates(images: Sequence[ImageT], history_of: Callable[[ImageT], list[Any]]) -> set[str]:
    """Ids of the untagged images another image is built on (``history_of``: its config history)."""
    histories: dict[str, list[Any]] = {}

    def history(image: ImageT) -> list[Any]:
        if image.id not in histories:
            histories[image.id] = history_of(image)
        return histories[image.id]

    found = set()
    for base in images:
        if not _untagged(base):
            continue
        chain = tuple(base.diff_ids)
        for other in images:
            if other.id == base.id or tuple(other.diff_ids[: len(chain)]) != chain:
                continue
            mine, theirs = history(base), history(other)
            if len(theirs) > len(mine) and theirs[: len(mine)] == mine:
                found.add(base.id)
                break
    return found


def _reference_matches(pattern: str, tags: Iterable[str]) -> bool:
    """Go's path.Match on ``name:tag`` or ``name``: ``*`` never crosses a ``/``."""

    def match(name: str) -> bool:
        parts, wanted = name.split("/"), pattern.split("/")
        return len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted))

    return any(match(tag) or match(tag.rpartition(":")[0]) for tag in tags)


def _label_matches(wanted: str, labels: Mapping[str, str]) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _created(image: Image) -> datetime:
    try:
        moment = datetime.fromisoformat(image.created.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select(
    images: Sequence[ImageT],
    *,
    show_all: bool,
    filters: Iterable[str],
    labels_of: Callable[[ImageT], Mapping[str, str]],
    history_of: Callable[[ImageT], list[Any]],
    resolve: Callable[[str], Image],
) -> list[ImageT]:
    """What ``images [-a] [-f …]`` shows (``show_all``: -a), in the order given. ``resolve``
    finds ``before=``'s and ``since=``'s image (NotFound if none); ``labels_of`` and
    ``history_of`` read an image's config."""
    wanted = parse_filters(filters)
    # a dangling image is an untagged one that is not an intermediate
    hidden = intermediates(images, history_of) if not show_all or "dangling" in wanted else set()
    shown = [i for i in images if i.id not in hidden]
    if "dangling" in wanted:
        want = {v.lower() in ("true", "1") for v in wanted["dangling"]}
        shown = [i for i in shown if _untagged(i) in want]
    if "reference" in wanted:
        shown = [i for i in shown if any(_reference_matches(p, i.repo_tags) for p in wanted["reference"])]
    if "label" in wanted:
        shown = [i for i in shown if all(_label_matches(w, labels_of(i)) for w in wanted["label"])]
    for key, keep in (("before", lambda a, b: a < b), ("since", lambda a, b: a > b)):
        for ref in wanted.get(key, ()):
            pivot = _created(resolve(ref))
            shown = [i for i in shown if keep(_created(i), pivot)]
    return shown
