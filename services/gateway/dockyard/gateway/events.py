"""The gateway's window on the event stream: one shared NATS connection, re-made when lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

from nats.aio.client import Client as NATS

from dockyard.adapters.nats.auth import NatsCredentials
from dockyard.adapters.nats.bus import StoredEvent, StreamSettings, close_quietly, connect, read_events


class EventSource:
    def __init__(
        self, url: str, settings: StreamSettings, credentials: NatsCredentials | None = None
    ) -> None:
        self.url = url
        self.settings = settings
        self.credentials = credentials  # the gateway's identity: it may read the stream, never publish
        self._nc: NATS | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> NATS:
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await connect(
                    self.url, name="dockyard-gateway-events", credentials=self.credentials
                )
            return self._nc

    async def read(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        start_sequence: int,
        follow: bool,
    ) -> AsyncIterator[StoredEvent]:
        """Events in stream order; raises Unavailable when NATS cannot be reached."""
        nc = await self._connection()
        async for stored in read_events(
            nc, self.settings, since=since, until=until, start_sequence=start_sequence, follow=follow
        ):
            yield stored

    async def close(self) -> None:
        if self._nc is not None:
            await close_quietly(self._nc)
