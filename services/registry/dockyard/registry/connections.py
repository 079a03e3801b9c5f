"""Holding the HTTP server up against slow and numerous clients.

Without these, ~1,100 connections that each send one header line every few seconds exhaust the
process's open files: legitimate requests time out and the accept loop logs "Too many open files"
thousands of times a second. What protects the server, in the order a connection meets it:

* **Open-files limit** (``raise_nofile_limit``): the soft RLIMIT_NOFILE is raised to the hard one
  at start-up, and the connection limit is derived from it with room to spare for blob files,
  gRPC and logs, so ``accept(2)`` itself never runs out of descriptors.
* **Connection limit with headroom** (``ConnectionGuard``): at ``limit`` open connections a new
  one makes room by closing the connection that has been *idle* longest — one waiting between
  requests or still sending its request head, never one whose request is being handled. Slow
  clients are always idle in that sense, so they cannot crowd out a newcomer. When every
  connection is busy, the newcomer gets an immediate ``503`` with ``Retry-After``.
* **Idle and header timeout**: a connection idle for ``idle_timeout`` (kept alive between
  requests, or never completing its request head) is closed; above three quarters of the limit
  the allowance shrinks to ``pressure_timeout``. A request body that stalls is the upload
  code's business (``body_idle_timeout``).
* **Rate-limited accept errors** (``RateLimitedExceptionHandler``): errors the event loop reports
  (a failed ``accept``, say) are logged once per ``interval`` with a count of the repeats.

Busy/idle is known from the request middleware (``begin``/``end`` around each handler), so the
guard needs nothing private from aiohttp beyond ``web.Server``'s public ``connections`` list and
``RequestHandler.force_close()``. Costs: O(1) per request; eviction and the reaper scan the open
connections (≤ ``limit``), the reaper once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("dockyard.registry.connections")

RESERVED_FDS = 256  # for blob files being served or written, gRPC, the outbox, logs
FDS_PER_CONNECTION = 2  # its socket + the blob file it may be reading or writing
MAX_DEFAULT_CONNECTIONS = 10_000
# An accepted connection not yet among the server's is pending (its connection_made is a loop turn
# or two away); one not seen after this long closed before anyone looked.
PENDING_GRACE = 0.5


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft if soft != resource.RLIM_INFINITY else hard)


def accept_backlog(nofile: int) -> int:
    """The listen backlog, which is also how many sockets asyncio accepts in one go (before any
    is counted or an evicted one's descriptor is freed): kept to a small share of ``nofile``."""
    return max(16, min(1024, nofile // 8))


def default_connection_limit(nofile: int) -> int:
    """How many connections ``nofile`` descriptors carry with room to spare (at least 32): the
    reserve, one accept burst, then two descriptors per connection."""
    spare = nofile - RESERVED_FDS - accept_backlog(nofile)
    return max(32, min(MAX_DEFAULT_CONNECTIONS, spare // FDS_PER_CONNECTION))


_BUSY_BODY = (
    b'{"errors":[{"code":"TOOMANYREQUESTS","message":"every connection is busy; retry shortly","detail":{}}]}'
)
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class _Refuse(asyncio.Protocol):
    """Answers 503 at once and closes: what a newcomer gets when every connection is busy."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_RESPONSE)
        transport.close()


@dataclass(slots=True)
class _State:
    busy: int  # requests being handled on this connection (0 or 1 without pipelining)
    idle_since: float  # monotonic time it last became idle (or connected)
    seen: bool = False  # observed among the server's connections (connection_made has run)


class ConnectionGuard:
    """A protocol factory in front of ``web.Server``: counts, evicts, refuses, reaps.

    ``limit`` caps open connections; ``idle_timeout`` closes a connection idle that long;
    ``pressure_timeout`` is the idle allowance once more than three quarters of ``limit`` are open.
    """

    def __init__(self, limit: int, idle_timeout: float, pressure_timeout: float = 2.0) -> None:
        self._server: web.Server | None = None
        self.limit = max(1, limit)
        self.idle_timeout = idle_timeout
        self.pressure_timeout = min(pressure_timeout, idle_timeout)
        self._states: dict[Any, _State] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.evicted = 0
        self.refused = 0
        self.reaped = 0

    def bind(self, server: web.Server) -> None:
        """Guard ``server`` (an ``AppRunner``'s, after ``setup``); until then the guard only counts."""
        self._server = server

    # ------------------------------------------------------------ protocol factory

    def __call__(self) -> asyncio.BaseProtocol:
        """Called by the loop for each accepted socket, before its ``connection_made``."""
        assert self._server is not None, "bind() first"
        # len(_states) over-counts (closed ones linger until the next scan): scan only near the limit.
        if len(self._states) >= self.limit and len(self._live()) >= self.limit and not self._evict_one():
            self.refused += 1
            return _Refuse()
        handler = self._server()
        self._states[handler] = _State(0, time.monotonic())
        return handler

    def _evict_one(self) -> bool:
        """Close the longest-idle connection; False when every one is busy."""
        idle = [(state.idle_since, id(h), h) for h, state in self._live() if state.busy == 0 and state.seen]
        if not idle:
            return False
        _, _, handler = min(idle)
        self._close(handler)
        self.evicted += 1
        return True

    def _live(self) -> list[tuple[Any, _State]]:
        """(handler, state) of every connection counted against the limit, accepted ones whose
        ``connection_made`` is still to come included; forgets the closed ones. O(connections)."""
        alive = set(self._server.connections) if self._server is not None else set()
        now = time.monotonic()
        live = []
        for handler, state in list(self._states.items()):
            if handler in alive:
                state.seen = True
            elif state.seen or now - state.idle_since > PENDING_GRACE:  # closed, or never made it
                del self._states[handler]
                continue
            live.append((handler, state))
        return live

    def _close(self, handler: Any) -> None:
        """Close now; it no longer counts (its ``connection_lost`` comes on a later loop turn)."""
        self._states.pop(handler, None)
        handler.force_close()

    # ------------------------------------------------------------ request bracket (middleware)

    def begin(self, handler: Any) -> None:
        state = self._states.get(handler)
        if state is not None:
            state.busy += 1
            state.seen = True  # a request arrived, so connection_made has run

    def end(self, handler: Any) -> None:
        state = self._states.get(handler)
        if state is not None:
            state.busy = max(0, state.busy - 1)
            state.idle_since = time.monotonic()

    # ------------------------------------------------------------ reaper

    def reap(self) -> int:
        """Close connections idle past their allowance; returns how many."""
        live = self._live()
        allowance = self.pressure_timeout if len(live) > self.limit * 3 // 4 else self.idle_timeout
        cutoff = time.monotonic() - allowance
        stale = [h for h, state in live if state.busy == 0 and state.seen and state.idle_since < cutoff]
        for handler in stale:
            self._close(handler)
        self.reaped += len(stale)
        return len(stale)

    async def _reap_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                self.reap()
            except Exception:
                log.exception("connection reaper failed")

    def start(self, period: float = 1.0) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever(period))

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None

    def stats(self) -> dict[str, int]:
        return {
            "open": len(self._live()),
            "limit": self.limit,
            "evicted": self.evicted,
            "refused": self.refused,
            "reaped": self.reaped,
        }


class RateLimitedExceptionHandler:
    """An event-loop exception handler that logs each kind of error once per ``interval``.

    The kind is the loop's message ("socket.accept() out of system resource") plus the exception
    type; repeats within the interval are counted and reported with the next line of that kind.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = f"{context.get('message', 'event loop error')}: {type(exc).__name__ if exc else '-'}"
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        repeats = self._suppressed.pop(kind, 0)
        log.error(
            "event loop error",
            kind=kind,
            error=str(exc) if exc else "",
            repeats_since_last=repeats,
            interval_s=self.interval,
        )


__all__ = [
    "ConnectionGuard",
    "RateLimitedExceptionHandler",
    "accept_backlog",
    "default_connection_limit",
    "raise_nofile_limit",
]
