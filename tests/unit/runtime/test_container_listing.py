"""``ps --filter``: docker's keys, labels that must all match, regex names, status without -a."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.runtime import listing
from dockyard.runtime.mounts import Kind, MountSpec
from dockyard.runtime.records import ContainerConfig, ContainerRecord, State

COMPOSE = "com.docker.compose"


def _record(
    name: str, created: str, service: str, state: State = State.RUNNING, **kw: object
) -> ContainerRecord:
    labels = {f"{COMPOSE}.project": "shop", f"{COMPOSE}.service": service, f"{COMPOSE}.config-hash": "h"}
    config = ContainerConfig(image="busybox", labels=labels, **kw)  # type: ignore[arg-type]
    return ContainerRecord(
        id=f"{name}0123456789", name=name, config=config, image_id="sha256:beef", created=created, state=state
    )


STORE = _record(
    "shop-store-1", "2026-01-01T00:00:01", "store", mounts=[MountSpec(Kind.VOLUME, "shop_data", "/data")]
)
APP = _record("shop-app-1", "2026-01-01T00:00:02", "app", network="shop_back")
WORKER = _record("shop-worker-1", "2026-01-01T00:00:03", "worker", State.EXITED)
ALL = [WORKER, APP, STORE]


def _names(*raw: str) -> list[str]:
    def find(ref: str) -> ContainerRecord:
        for r in ALL:
            if r.name == ref:
                return r
        raise NotFound(ref)

    return [r.name for r in listing.select(ALL, listing.parse(raw), find)]


def test_every_label_must_match_as_compose_expects() -> None:
    """compose exec finds one service's container by three label filters at once."""
    wanted = (
        f"label={COMPOSE}.config-hash",
        f"label={COMPOSE}.project=shop",
        f"label={COMPOSE}.service=store",
    )
    assert _names(*wanted) == ["shop-store-1"]
    assert _names(f"label={COMPOSE}.project=other") == []


def test_other_keys() -> None:
    assert _names("name=app") == ["shop-app-1"]  # a regular expression, searched
    assert _names("name=^/shop-store-1$") == ["shop-store-1"]
    assert _names("status=exited", "status=running") == ["shop-worker-1", "shop-app-1", "shop-store-1"]
    assert _names("status=exited", "name=shop") == ["shop-worker-1"]  # different keys AND
    assert (
        _names("ancestor=busybox:latest")
        == _names("ancestor=beef")
        == ["shop-worker-1", "shop-app-1", "shop-store-1"]
    )
    assert _names("volume=shop_data") == ["shop-store-1"] and _names("network=shop_back") == ["shop-app-1"]
    assert _names("exited=0") == ["shop-worker-1"] and _names("health=none") == _names()
    assert _names("before=shop-app-1") == ["shop-store-1"] and _names("since=shop-app-1") == ["shop-worker-1"]
    assert listing.parse(["status=exited"]).lists_stopped and not listing.parse(["name=x"]).lists_stopped


@pytest.mark.parametrize("bad", ["colour=red", "status=sleeping", "name=(", "exited=x", "label"])
def test_bad_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid filter"):
        listing.parse([bad])
