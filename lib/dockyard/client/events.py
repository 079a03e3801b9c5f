"""``client.events``: the platform's CloudEvents, replayed and followed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dockyard.api.events.v1 import events_pb2 as pb
from dockyard.api.events.v1 import events_pb2_grpc
from dockyard.client.calls import Stream
from dockyard.client.types import Event


class Events:
    def __init__(self, channel: Any) -> None:
        self._stub = events_pb2_grpc.EventsStub(channel)

    def stream(
        self, *, since: datetime | None = None, until: datetime | None = None, filters: tuple[str, ...] = ()
    ) -> Stream[Event]:
        """Events from ``since`` (default: from now on) until ``until`` (default: follow until
        cancelled); ``filters`` as ``dockyard events --filter`` (``type=container``, ``action=start``…)."""
        request = pb.SubscribeRequest(filters=filters)
        if since is not None:
            request.since.FromDatetime(since)
        if until is not None:
            request.until.FromDatetime(until)
        return Stream(self._stub.Subscribe(request), Event.from_pb)
