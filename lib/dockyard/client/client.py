"""``Client`` and ``AsyncClient``: one connection to the gateway and a domain object per noun.

The sync client is the implementation (the CLI's, too); the async one runs each of its calls in a
worker thread and turns a :class:`~dockyard.client.calls.Stream` into an async iterator that
cancels the call when the consumer stops early. One behaviour, two forms.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dockyard.client.builds import Builds
from dockyard.client.calls import Stream
from dockyard.client.connection import Endpoint, channel, resolve
from dockyard.client.containers import Containers
from dockyard.client.events import Events
from dockyard.client.images import Images
from dockyard.client.networks import Networks, Volumes

if TYPE_CHECKING:
    from dockyard.adapters.grpc.tls import ClientTls

T = TypeVar("T")
D = TypeVar("D")


class Client:
    """The platform at ``host`` (``unix:///path``, ``tcp://host:port`` with ``tls``), else
    ``$DOCKYARD_HOST``, else your own local socket. Use it as a context manager, or ``close()``."""

    def __init__(self, host: Endpoint | str | None = None, tls: ClientTls | None = None) -> None:
        self.endpoint = resolve(host, tls)
        self.channel = channel(self.endpoint)  # for calls the library does not wrap (interactive attach)
        self.images = Images(self.channel)
        self.containers = Containers(self.channel, self.images)
        self.networks = Networks(self.channel)
        self.volumes = Volumes(self.channel)
        self.events = Events(self.channel)
        self.builds = Builds(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(Generic[T]):
    """A :class:`Stream` consumed with ``async for``; leaving the loop early cancels the call."""

    def __init__(self, stream: Stream[T]) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        done = object()
        try:
            while (item := await asyncio.to_thread(next, self._stream, done)) is not done:
                yield item  # type: ignore[misc]
        finally:
            self._stream.cancel()

    def cancel(self) -> None:
        self._stream.cancel()


class Async(Generic[D]):
    """Every method of the sync domain object ``D``, awaited; a method that returns a Stream
    returns an :class:`AsyncStream` instead (call it without ``await``)."""

    def __init__(self, sync: D) -> None:
        self._sync = sync

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)
        if name in _STREAMING:

            @functools.wraps(method)
            def streaming(*args: Any, **kwargs: Any) -> AsyncStream[Any]:
                return AsyncStream(method(*args, **kwargs))

            return streaming

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


_STREAMING = frozenset(
    {"logs", "stream", "save", "build_from_tar", "stats", "copy_from"}
)  # the methods that return a Stream


class AsyncClient:
    """:class:`Client` for asyncio: ``await client.containers.run(...)``,
    ``async for e in client.events.stream(...)``. Use it as an async context manager."""

    def __init__(self, host: Endpoint | str | None = None, tls: ClientTls | None = None) -> None:
        self.sync = Client(host, tls)
        self.images = Async(self.sync.images)
        self.containers = Async(self.sync.containers)
        self.networks = Async(self.sync.networks)
        self.volumes = Async(self.sync.volumes)
        self.events = Async(self.sync.events)
        self.builds = Async(self.sync.builds)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
