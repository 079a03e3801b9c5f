"""``images [-a] [-f …]``: intermediates hidden as docker hides them, and docker's filter keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.runtime.images import selection


@dataclass(frozen=True)
class Img:
    id: str
    diff_ids: tuple[str, ...]
    created: str
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    history: tuple[str, ...] = ()


BASE = Img("base", ("l1",), "2026-01-01T00:00:00Z", ("busybox:latest",), history=("ADD",))
STEP = Img("step", ("l1", "l2"), "2026-01-02T00:00:00Z", history=("ADD", "COPY"))  # a build's
RUN = Img("run", ("l1", "l2", "l3"), "2026-01-02T00:00:01Z", history=("ADD", "COPY", "RUN"))
APP = Img(  # the stage's end: the RUN's layers, and LABEL and CMD entries with no layer
    "app",
    ("l1", "l2", "l3"),
    "2026-01-03T00:00:00Z",
    ("team/app:1.2",),
    labels={"tier": "web"},
    history=("ADD", "COPY", "RUN", "LABEL", "CMD"),
)
# the app's earlier build, untagged by a rebuild that changed its CMD: the same layers, but
# nothing is built on it, so it is dangling
STALE = Img(
    "stale", ("l1", "l2", "l3"), "2026-01-02T12:00:00Z", history=("ADD", "COPY", "RUN", "LABEL", "OLD")
)
OLD = Img("old", ("x1",), "2026-01-04T00:00:00Z")  # untagged, nothing built on it: dangling
DIGESTED = Img("pinned", ("y1",), "2026-01-05T00:00:00Z", (), ("registry.lab/x@sha256:" + "a" * 64,))
ALL = [DIGESTED, OLD, APP, STALE, RUN, STEP, BASE]


def _ids(all: bool = False, *filters: str) -> list[str]:
    def resolve(ref: str) -> Img:
        for image in ALL:
            if image.id == ref or ref in image.repo_tags:
                return image
        raise NotFound(f"no such image: {ref}")

    found = selection.select(
        ALL,
        show_all=all,
        filters=filters,
        labels_of=lambda i: i.labels,
        history_of=lambda i: list(i.history),
        resolve=resolve,
    )
    return [i.id for i in found]


def test_intermediates_are_hidden_unless_all() -> None:
    assert _ids() == ["pinned", "old", "app", "stale", "base"]
    assert _ids(True) == ["pinned", "old", "app", "stale", "run", "step", "base"]


def test_dangling() -> None:
    assert _ids(False, "dangling=true") == ["old", "stale"]
    assert _ids(True, "dangling=true") == ["old", "stale"]  # an intermediate is not dangling
    assert _ids(False, "dangling=false") == ["pinned", "app", "base"]


def test_reference_label_before_since() -> None:
    assert _ids(False, "reference=busybox") == ["base"]
    assert _ids(False, "reference=team/*:1.*") == ["app"]
    assert _ids(False, "reference=*") == ["base"]  # * stays within one path component
    assert _ids(False, "reference=busybox", "reference=team/app") == ["app", "base"]
    assert _ids(False, "label=tier") == _ids(False, "label=tier=web") == ["app"]
    assert _ids(False, "label=tier=db") == []
    assert _ids(False, "before=team/app:1.2") == ["stale", "base"]
    assert _ids(False, "since=busybox:latest") == ["pinned", "old", "app", "stale"]
    with pytest.raises(NotFound):
        _ids(False, "since=nosuch")


@pytest.mark.parametrize("bad", ["colour=red", "dangling=maybe", "label", "reference="])
def test_bad_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        _ids(False, bad)
