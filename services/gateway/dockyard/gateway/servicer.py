"""The gateway's own services: Platform (status of everything) and Events (filtered replay)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc

from dockyard.adapters.grpc.convert import event_to_pb, from_timestamp, info_to_pb
from dockyard.api.events.v1 import events_pb2, events_pb2_grpc
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.core.events import EventFilter
from dockyard.core.service import ServiceInfo
from dockyard.gateway.backends import Backend
from dockyard.gateway.events import EventSource


class PlatformServicer(system_pb2_grpc.PlatformServicer):
    def __init__(
        self,
        info: Callable[[], ServiceInfo],
        backends: list[Backend],
        events: EventSource,
        events_connected: Callable[[], bool],
    ) -> None:
        self._info = info
        self._backends = backends
        self._events = events
        self._events_connected = events_connected

    async def Status(
        self, request: system_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> system_pb2.StatusResponse:
        statuses = await asyncio.gather(*(b.status() for b in self._backends))
        return system_pb2.StatusResponse(
            gateway=info_to_pb(self._info()),
            backends=[
                system_pb2.BackendStatus(
                    name=s.name, address=s.address, health=s.health, info=info_to_pb(s.info)
                )
                for s in statuses
            ],
            events_connected=self._events_connected(),
            events_stream=self._events.settings.name,
        )

    async def ListNodes(
        self, request: system_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> system_pb2.ListNodesResponse:
        runtimes = [b for b in self._backends if b.name == "runtime"]
        nodes = []
        for backend in runtimes:
            status = await backend.status()
            nodes.append(
                system_pb2.Node(
                    name=status.info.node or backend.address, address=backend.address, state=status.info.state
                )
            )
        return system_pb2.ListNodesResponse(nodes=nodes)


class EventsServicer(events_pb2_grpc.EventsServicer):
    def __init__(self, events: EventSource) -> None:
        self._events = events

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.Event]:
        wanted = EventFilter.parse(list(request.filters))
        since = from_timestamp(request.since) if request.HasField("since") else None
        until = from_timestamp(request.until) if request.HasField("until") else None
        async for stored in self._events.read(
            since=since, until=until, start_sequence=request.start_sequence, follow=until is None
        ):
            if wanted.matches(stored.event):
                yield event_to_pb(stored.event, stored.sequence)
