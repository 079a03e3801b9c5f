"""The JetStream adapter as the core ``Subscriber``: filtered, in order, payloads readable by type."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from dockyard.adapters.nats.bus import JetStreamSubscriber, StreamSettings, connect, ensure_stream
from dockyard.adapters.nats.server import NatsServer
from dockyard.core.eventdata import ContainerDied, ContainerStarted, ImageTagged
from dockyard.core.events import Event, EventFilter, Subject, Subscriber, new_event


async def test_a_subscriber_gets_the_matching_events_with_typed_payloads(nats_server: NatsServer) -> None:
    settings = StreamSettings(name="T_SUBSCRIBER")
    nc = await connect(nats_server.url, name="test")
    try:
        await ensure_stream(nc, settings)
        before = datetime.now(UTC) - timedelta(seconds=1)
        published = [
            new_event(Subject.CONTAINER_STARTED, "/t", "c1", ContainerStarted("c1", "web", "busybox", 42)),
            new_event(Subject.IMAGE_TAGGED, "/t", "img", ImageTagged("busybox:1")),
            new_event(Subject.CONTAINER_DIED, "/t", "c1", ContainerDied("c1", "web", "busybox", 3, False)),
        ]
        js = nc.jetstream()
        for event in published:
            await js.publish(event.nats_subject, event.to_json(), stream=settings.name)

        subscriber: Subscriber = JetStreamSubscriber(nc, settings)
        want = EventFilter.parse(["type=container"])
        seen = [e async for e in subscriber.subscribe(want, since=before, follow=False)]
        assert [e.id for e in seen] == [published[0].id, published[2].id]
        assert seen[1].payload(ContainerDied).exitCode == 3

        # following: one published after the subscription started arrives too
        live = subscriber.subscribe(EventFilter.parse(["action=tagged"]))
        nxt: asyncio.Future[Event] = asyncio.ensure_future(anext(live))
        await asyncio.sleep(0.5)  # the ordered consumer exists before we publish
        later = new_event(Subject.IMAGE_TAGGED, "/t", "img", ImageTagged("busybox:2"))
        await js.publish(later.nats_subject, later.to_json(), stream=settings.name)
        got = await asyncio.wait_for(nxt, 10)
        assert got.payload(ImageTagged).name == "busybox:2"
        await live.aclose()
    finally:
        await nc.close()
