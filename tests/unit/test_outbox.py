from __future__ import annotations

from pathlib import Path

from dockyard.core.eventdata import ImageTagged
from dockyard.core.events import Subject, new_event
from dockyard.core.outbox import Outbox


def test_events_survive_reopening_in_emission_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    ids = [
        box.append(new_event(Subject.IMAGE_TAGGED, "s", f"img{i}", ImageTagged(f"img{i}"))) and f"img{i}"
        for i in range(25)
    ]
    reopened = Outbox(tmp_path)
    assert [p.event.subject for p in reopened.pending()] == ids
    assert len(reopened) == 25


def test_ack_removes_exactly_one(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for i in range(3):
        box.append(new_event(Subject.IMAGE_TAGGED, "s", str(i), ImageTagged(str(i))))
    first = box.pending()[0]
    box.ack(first)
    assert [p.event.subject for p in box.pending()] == ["1", "2"]


def test_half_written_and_foreign_files_never_block_the_queue(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    (tmp_path / "tmp" / "partial.json").write_bytes(b'{"specversion":')
    (tmp_path / "pending" / "00000000000000000000-x.json").write_bytes(b"garbage")
    box.append(new_event(Subject.IMAGE_TAGGED, "s", "good", ImageTagged("good")))
    box = Outbox(tmp_path)
    assert not list((tmp_path / "tmp").iterdir())  # swept at open
    assert [p.event.subject for p in box.pending()] == ["good"]
    assert (tmp_path / "corrupt" / "00000000000000000000-x.json").exists()


def test_listeners_hear_every_append(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    heard: list[int] = []
    box.on_append(lambda: heard.append(1))
    box.append(new_event(Subject.IMAGE_TAGGED, "s", "a", ImageTagged("a")))
    box.append(new_event(Subject.IMAGE_TAGGED, "s", "b", ImageTagged("b")))
    assert len(heard) == 2


def test_a_dead_letter_leaves_the_queue_with_its_reason_and_is_counted(tmp_path: Path) -> None:
    from dockyard.core.eventdata import ImageTagged
    from dockyard.core.events import Subject, new_event
    from dockyard.core.outbox import Outbox

    outbox = Outbox(tmp_path / "ob")
    assert outbox.dead_count() == 0
    first = outbox.append(new_event(Subject.IMAGE_TAGGED, "/t", "a", ImageTagged("a")))
    outbox.append(new_event(Subject.IMAGE_TAGGED, "/t", "b", ImageTagged("b")))
    item = outbox.pending()[0]
    assert item.path == first
    outbox.dead_letter(item, "too big")
    assert [p.event.subject for p in outbox.pending()] == ["b"] and len(outbox) == 1
    assert outbox.dead_count() == 1
    assert (tmp_path / "ob" / "dead" / f"{first.name}.reason").read_text() == "too big\n"
    assert Outbox(tmp_path / "ob").dead_count() == 1  # kept across a restart, not re-queued
