"""The pure parts of issue #15 item 7 (a full disk): the one line, the outbox's held events, NATS's fit."""

from __future__ import annotations

import errno
from pathlib import Path

import grpc
import pytest

from dockyard.adapters.grpc.errors import to_status
from dockyard.adapters.nats.auth import fit_to_disk, server_config, store_slack
from dockyard.adapters.nats.bus import StreamSettings
from dockyard.core.eventdata import ImageTagged
from dockyard.core.events import Subject, new_event
from dockyard.core.fsutil import mount_point, storage_full
from dockyard.core.outbox import Outbox, OutboxPublisher

MIB = 1 << 20


def test_enospc_however_wrapped_is_resource_exhausted_naming_the_filesystem(tmp_path: Path) -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
        except OSError as inner:
            raise RuntimeError("unpack failed") from inner
    except RuntimeError as exc:
        code, message = to_status(exc)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message.startswith("no space left on device: the filesystem mounted at ")
    assert str(mount_point(tmp_path)) in message and str(tmp_path / "x") in message
    assert "\n" not in message


def test_storage_full_uses_the_path_a_write_does_not_carry(tmp_path: Path) -> None:
    err = storage_full(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path / "f")
    assert "disk quota exceeded" in err.message and str(tmp_path / "f") in err.message


class FullOnce(Outbox):
    full = True

    def append(self, event):  # type: ignore[no-untyped-def]
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().append(event)


def test_outbox_publisher_holds_events_while_full_and_writes_them_in_order(tmp_path: Path) -> None:
    outbox = FullOnce(tmp_path / "outbox")
    pub = OutboxPublisher(outbox)
    events = [new_event(Subject.IMAGE_TAGGED, "s", f"i{i}", ImageTagged(f"i{i}")) for i in range(3)]
    pub.publish(events[0])
    pub.publish(events[1])  # no exception: a kill must not fail on a full disk
    assert pub.held == 2 and len(outbox) == 0
    outbox.full = False
    pub.publish(events[2])
    assert pub.held == 0
    assert [p.event.id for p in outbox.pending()] == [e.id for e in events]
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []


def test_outbox_append_leaves_no_partial_file_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    outbox = Outbox(tmp_path / "outbox")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        outbox.append(new_event(Subject.IMAGE_TAGGED, "s", "i", ImageTagged("i")))
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []


@pytest.mark.parametrize("free", [40 * MIB, 300 * MIB, 1 << 30, 5 << 30, 100 << 30])
def test_the_event_store_fits_a_quarter_of_the_free_space(free: int) -> None:
    settings = fit_to_disk(StreamSettings(), free)
    limit = server_config({}, settings)["jetstream"]["max_file_store"]
    assert limit == settings.max_bytes + store_slack(settings.max_bytes)
    if free >= 16 << 30:
        assert settings.max_bytes == StreamSettings().max_bytes  # a big disk: the configured bound
    else:
        assert limit <= max(free // 4, 24 * MIB)
