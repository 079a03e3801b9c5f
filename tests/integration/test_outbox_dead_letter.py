"""An event NATS can never take is set aside, and the events behind it go on (real nats-server).

Before, a container name of 10 MB made events over the server's max_payload (1 MiB); the drainer
retried the first of them at the head of the queue forever, across restarts, and 7,445 runtime
events waited behind it until files were deleted by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from dockyard.adapters.nats.bus import OutboxDrainer, StreamSettings, connect, read_events
from dockyard.adapters.nats.server import NatsServer
from dockyard.core.eventdata import ContainerCreated
from dockyard.core.events import Subject, new_event
from dockyard.core.outbox import Outbox, OutboxPublisher


async def _subjects(url: str, settings: StreamSettings) -> list[str]:
    nc = await connect(url, name="test-reader")
    try:
        return [s.event.subject async for s in read_events(nc, settings, start_sequence=1, follow=False)]
    finally:
        await nc.close()


async def _drain(outbox: Outbox, url: str, settings: StreamSettings) -> bool:
    drainer = OutboxDrainer(outbox, url, settings, name="test")
    task = asyncio.create_task(drainer.run())
    try:
        return await drainer.flush(20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_event_over_max_payload_is_dead_lettered_and_the_queue_moves_on(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = StreamSettings(name="T_DEAD")
    outbox = Outbox(tmp_path / "outbox")
    publisher = OutboxPublisher(outbox)
    publisher.publish(
        new_event(Subject.CONTAINER_CREATED, "/test", "before", ContainerCreated("before", "n", "img"))
    )
    huge = new_event(
        Subject.CONTAINER_CREATED, "/test", "huge", ContainerCreated("huge", "n" * (2 << 20), "img")
    )
    publisher.publish(huge)
    for i in range(3):
        publisher.publish(
            new_event(
                Subject.CONTAINER_CREATED, "/test", f"after-{i}", ContainerCreated(f"after-{i}", "n", "img")
            )
        )

    assert await _drain(outbox, nats_server.url, settings), f"{len(outbox)} events stuck behind the big one"
    assert await _subjects(nats_server.url, settings) == ["before", "after-0", "after-1", "after-2"]
    assert len(outbox) == 0 and outbox.dead_count() == 1
    dead = sorted((outbox.root / "dead").iterdir())
    assert [p.name.endswith(".json") for p in dead] == [True, False]
    assert huge.id in dead[0].name and dead[0].read_bytes() == huge.to_json()
    assert "max_payload" in dead[1].read_text()

    # a later drainer (the service restarted) does not pick it up again; new events flow
    publisher.publish(
        new_event(Subject.CONTAINER_CREATED, "/test", "later", ContainerCreated("later", "n", "img"))
    )
    assert await _drain(outbox, nats_server.url, settings)
    assert (await _subjects(nats_server.url, settings))[-1] == "later"
    assert outbox.dead_count() == 1
