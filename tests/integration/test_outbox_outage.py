"""The outbox across a NATS outage: every event emitted while NATS is down arrives, once by id."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dockyard.adapters.nats.bus import OutboxDrainer, StreamSettings, connect, read_events
from dockyard.adapters.nats.server import NatsServer
from dockyard.core.eventdata import ImageTagged
from dockyard.core.events import Subject, new_event
from dockyard.core.outbox import Outbox, OutboxPublisher

OUTAGE_S = float(os.environ.get("DOCKYARD_TEST_OUTAGE_S", "5"))


async def _all_events(url: str, settings: StreamSettings) -> list[str]:
    nc = await connect(url, name="test-reader")
    try:
        return [s.event.subject async for s in read_events(nc, settings, start_sequence=1, follow=False)]
    finally:
        await nc.close()


async def test_events_emitted_while_nats_is_down_all_arrive_once(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = StreamSettings(name="T_OUTAGE")
    outbox = Outbox(tmp_path / "outbox")
    publisher = OutboxPublisher(outbox)
    drainer = OutboxDrainer(outbox, nats_server.url, settings, name="test")
    task = asyncio.create_task(drainer.run())
    try:
        for i in range(10):
            publisher.publish(
                new_event(Subject.IMAGE_TAGGED, "/test", f"before-{i}", ImageTagged(f"before-{i}"))
            )
        assert await drainer.flush(10), "events did not drain while NATS was up"

        nats_server.stop()
        during = [f"during-{i}" for i in range(50)]
        for i, name in enumerate(during):
            # publish() must not block or fail while the bus is down
            publisher.publish(new_event(Subject.IMAGE_TAGGED, "/test", name, ImageTagged(name)))
            if i % 10 == 0:
                await asyncio.sleep(OUTAGE_S / 5)
        assert len(outbox) == 50, "events were lost or sent while NATS was down"

        nats_server.start()
        for i in range(5):
            publisher.publish(
                new_event(Subject.IMAGE_TAGGED, "/test", f"after-{i}", ImageTagged(f"after-{i}"))
            )
        assert await drainer.flush(30), f"{len(outbox)} events still pending after NATS came back"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    subjects = await _all_events(nats_server.url, settings)
    expected = [f"before-{i}" for i in range(10)] + during + [f"after-{i}" for i in range(5)]
    assert subjects == expected  # every event, in emission order, no duplicates


async def test_a_resend_after_a_crash_is_deduplicated_by_event_id(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = StreamSettings(name="T_DEDUP")
    outbox = Outbox(tmp_path / "outbox")
    event = new_event(Subject.IMAGE_TAGGED, "/test", "once", ImageTagged("once"))
    outbox.append(event)
    # A drainer that published but "crashed" before removing the file: the event is sent twice.
    for _ in range(2):
        drainer = OutboxDrainer(outbox, nats_server.url, settings, name="test")
        task = asyncio.create_task(drainer.run())
        await drainer.flush(10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.append(event)
    outbox.ack(outbox.pending()[0])
    assert await _all_events(nats_server.url, settings) == ["once"]
