from __future__ import annotations

import json

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.core.events import Event, EventFilter, Subject, new_event


def test_every_subject_maps_to_a_cloudevent_type_and_back() -> None:
    for subject in Subject:
        event = new_event(subject, "/dockyard/test", "x")
        assert event.nats_subject == subject.value
        assert event.type == f"io.dockyard.{subject.area}.{subject.action}"


def test_cloudevent_json_has_the_required_attributes_and_round_trips() -> None:
    event = new_event(Subject.CONTAINER_STARTED, "/dockyard/runtime/n1", "c0ffee", {"pid": 7}, {"app": "web"})
    doc = json.loads(event.to_json())
    assert doc["specversion"] == "1.0"
    for attr in ("id", "source", "type", "subject", "time", "data"):
        assert doc[attr], attr
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "raw",
    [b"", b"[]", b"{}", b'{"specversion":"0.3"}', b'{"specversion":"1.0","type":"com.other.x.y"}'],
)
def test_malformed_documents_are_invalid_argument(raw: bytes) -> None:
    with pytest.raises(InvalidArgument):
        Event.from_json(raw)


def test_filters_and_within_or_across() -> None:
    started = new_event(Subject.CONTAINER_STARTED, "s", "c1", labels={"app": "web"})
    died = new_event(Subject.CONTAINER_DIED, "s", "c2")
    pushed = new_event(Subject.REGISTRY_MANIFEST_PUSHED, "s", "repo:1")
    f = EventFilter.parse(["type=container", "action=started", "action=died"])
    assert [e.subject for e in (started, died, pushed) if f.matches(e)] == ["c1", "c2"]
    assert EventFilter.parse(["label=app=web"]).matches(started)
    assert not EventFilter.parse(["label=app=db"]).matches(started)
    assert EventFilter.parse(["label=app"]).matches(started)
    assert EventFilter.parse(["entity=repo:1"]).matches(pushed)
    assert EventFilter.parse(["type=container.died"]).matches(died)
    assert not EventFilter.parse(["type=container.died"]).matches(started)


@pytest.mark.parametrize("bad", ["type", "colour=red", "type="])
def test_bad_filters_say_what_is_wanted(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="want type="):
        EventFilter.parse([bad])
