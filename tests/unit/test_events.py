from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from dockyard.core import eventdata
from dockyard.core.errors import InvalidArgument
from dockyard.core.events import PAYLOADS, Event, EventFilter, PayloadMismatch, Subject, new_event


def minimal(subject: Subject, **data: Any) -> dict[str, Any]:
    """Data with every required field of ``subject`` (placeholder values: the check is on names)."""
    required = [f.name for f in dataclasses.fields(PAYLOADS[subject]) if f.default is dataclasses.MISSING]
    return {name: "x" for name in required} | data


def test_every_subject_maps_to_a_cloudevent_type_and_back() -> None:
    for subject in Subject:
        event = new_event(subject, "/dockyard/test", "x", minimal(subject))
        assert event.nats_subject == subject.value
        assert event.type == f"io.dockyard.{subject.area}.{subject.action}"


def test_cloudevent_json_has_the_required_attributes_and_round_trips() -> None:
    event = new_event(
        Subject.CONTAINER_STARTED,
        "/dockyard/runtime/n1",
        "c0ffee",
        minimal(Subject.CONTAINER_STARTED, pid=7),
        {"app": "web"},
    )
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
    started = new_event(
        Subject.CONTAINER_STARTED, "s", "c1", minimal(Subject.CONTAINER_STARTED), {"app": "web"}
    )
    died = new_event(Subject.CONTAINER_DIED, "s", "c2", minimal(Subject.CONTAINER_DIED))
    pushed = new_event(
        Subject.REGISTRY_MANIFEST_PUSHED, "s", "repo:1", minimal(Subject.REGISTRY_MANIFEST_PUSHED)
    )
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


def test_every_subject_has_its_own_payload_type() -> None:
    assert set(PAYLOADS) == set(Subject)
    kinds = list(PAYLOADS.values())
    assert len(set(kinds)) == len(kinds), "two subjects share a payload type"
    assert all(issubclass(k, eventdata.Payload) for k in kinds)


def test_new_event_refuses_data_that_is_not_the_subjects_payload() -> None:
    with pytest.raises(PayloadMismatch, match=r"ContainerDied: missing required field\(s\) oomKilled"):
        new_event(Subject.CONTAINER_DIED, "s", "c1", {"id": "c1", "name": "n", "image": "i", "exitCode": 1})
    with pytest.raises(PayloadMismatch, match=r"unknown field\(s\) exit_code"):
        new_event(Subject.CONTAINER_DIED, "s", "c1", minimal(Subject.CONTAINER_DIED, exit_code=1))
    with pytest.raises(PayloadMismatch, match="carries ContainerDied, not ContainerStarted"):
        new_event(Subject.CONTAINER_DIED, "s", "c1", eventdata.ContainerStarted("c1", "n", "i", 7))
    with pytest.raises(PayloadMismatch, match="missing required field"):
        new_event(Subject.IMAGE_TAGGED, "s", "img")


def test_optional_fields_may_be_left_out_and_a_payload_object_is_taken_as_data() -> None:
    failed = new_event(Subject.BUILD_FAILED, "s", "b1", {"tags": ["a"], "error": "boom"})
    assert failed.data == {"tags": ["a"], "error": "boom"}
    died = new_event(
        Subject.CONTAINER_DIED, "s", "c1", eventdata.ContainerDied("c1", "web", "busybox", 137, True)
    )
    assert died.data == {"id": "c1", "name": "web", "image": "busybox", "exitCode": 137, "oomKilled": True}


def test_a_consumer_reads_the_typed_payload() -> None:
    raw = new_event(
        Subject.CONTAINER_DIED, "s", "c1", eventdata.ContainerDied("c1", "web", "busybox", 1, False)
    )
    event = Event.from_json(raw.to_json())
    died = event.payload(eventdata.ContainerDied)
    assert (died.name, died.exitCode, died.oomKilled) == ("web", 1, False)
    with pytest.raises(InvalidArgument, match="carries ContainerDied, not ContainerStarted"):
        event.payload(eventdata.ContainerStarted)
    newer = dataclasses.replace(event, data={**event.data, "restartCount": 2})  # a field from a newer emitter
    assert newer.payload(eventdata.ContainerDied) == died
    with pytest.raises(InvalidArgument, match="lacks oomKilled"):
        dataclasses.replace(event, data={"id": "c1", "name": "w", "image": "b", "exitCode": 1}).payload(
            eventdata.ContainerDied
        )
