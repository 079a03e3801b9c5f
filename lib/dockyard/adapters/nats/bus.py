"""JetStream as Dockyard's event bus: the stream, the outbox drainer and the replaying reader.

- ``StreamSettings`` / ``ensure_stream``: one stream (``DOCKYARD_EVENTS``) over ``dockyard.>``,
  bounded by age and size, with a de-duplication window keyed by the event id.
- ``OutboxDrainer``: moves events from a service's on-disk outbox to JetStream in order,
  removing each only after the stream acknowledged it; retries forever (``retry.bus``) while
  NATS is down, so a dead NATS delays events and loses none. An event NATS can never take
  (bigger than the server's ``max_payload``, or refused with a 400) is set aside in the
  outbox's dead-letter directory, logged and counted, instead of blocking the queue.
- ``read_events``: an ordered, ephemeral consumer that replays from a time or sequence and
  optionally follows; the gateway's ``Events.Subscribe`` is built on it.
- ``JetStreamSubscriber``: the core ``Subscriber`` role over ``read_events``, for automation
  that wants events by filter and does not care about stream sequences.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from dockyard.adapters.nats.auth import NatsCredentials
from dockyard.core import retry
from dockyard.core.errors import Unavailable
from dockyard.core.events import STREAM_SUBJECTS, Event, EventFilter
from dockyard.core.outbox import Outbox, PendingEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Bounds of the event stream. Defaults: 30 days, 1 GiB, 10 min de-duplication window."""

    name: str = "DOCKYARD_EVENTS"
    max_age_s: float = 30 * 24 * 3600
    max_bytes: int = 1 << 30
    duplicate_window_s: float = 600

    @classmethod
    def from_env(cls) -> StreamSettings:
        """Read ``DOCKYARD_EVENTS_STREAM``, ``..._MAX_AGE`` (seconds), ``..._MAX_BYTES``."""
        env, default = os.environ, cls()
        return cls(
            name=env.get("DOCKYARD_EVENTS_STREAM", default.name),
            max_age_s=float(env.get("DOCKYARD_EVENTS_MAX_AGE", default.max_age_s)),
            max_bytes=int(env.get("DOCKYARD_EVENTS_MAX_BYTES", default.max_bytes)),
        )


async def connect(
    url: str, *, name: str, credentials: NatsCredentials | None = None, connect_timeout: float = 2.0
) -> NATS:
    """Connect, raising Unavailable at once when NATS is down or refuses ``credentials``.

    With ``credentials`` the client logs in as that identity and uses its own inbox prefix, the
    only subjects the identity may subscribe to (see :mod:`dockyard.adapters.nats.auth`).

    nats-py's own reconnection covers only short blips (a few tries); a long outage closes
    the client and the caller's retry policy (``retry.bus``) decides what to do, so no call
    ever hangs on a dead server.
    """

    errors: list[Exception] = []

    async def quiet(exc: Exception) -> None:  # nats-py would log a traceback per failed attempt
        errors.append(exc)
        log.debug("nats connection error", error=repr(exc))

    login: dict[str, str] = {}
    if credentials is not None:
        login = {
            "user": credentials.user,
            "password": credentials.password,
            "inbox_prefix": credentials.inbox_prefix,
        }
    try:
        return await nats.connect(
            url,
            name=name,
            **login,
            error_cb=quiet,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=3,
            reconnect_time_wait=0.5,
        )
    except Exception as exc:
        why = str(exc) or type(exc).__name__
        refused = [e for e in errors if "authorization violation" in str(e).lower()]
        if refused:  # nats-py ends with "no servers available"; the server's reason is the news
            why = f"{refused[-1]} (as {credentials.user if credentials else 'no user'})"
        raise Unavailable(f"cannot reach NATS at {url}: {why}") from exc


async def ensure_stream(nc: NATS, settings: StreamSettings) -> None:
    """Create the event stream if missing, or bring its bounds to ``settings``. Idempotent."""
    js = nc.jetstream()
    config = js_api.StreamConfig(
        name=settings.name,
        subjects=[STREAM_SUBJECTS],
        storage=js_api.StorageType.FILE,
        max_age=settings.max_age_s,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_s,
        discard=js_api.DiscardPolicy.OLD,
    )
    try:
        await js.stream_info(settings.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("event stream created", stream=settings.name)
        return
    await js.update_stream(config)


#: Room kept for a message's headers (``Nats-Msg-Id``): max_payload counts them too.
_HEADER_ROOM = 256


class OutboxDrainer:
    """Publish an outbox's events to JetStream, oldest first, each exactly once per id.

    Run ``run()`` as a task for the life of the service; ``wake()`` is safe from any thread.
    Without ``credentials`` (a server without authentication) it creates the stream when missing;
    with them, the stream is ``dockyard up``'s (its ``admin`` identity): the drainer only publishes,
    and a missing stream is one more reason to retry.
    """

    def __init__(
        self,
        outbox: Outbox,
        url: str,
        settings: StreamSettings,
        *,
        name: str,
        credentials: NatsCredentials | None = None,
    ) -> None:
        self.outbox = outbox
        self.url = url
        self.settings = settings
        self.name = name
        self.credentials = credentials
        self.connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        outbox.on_append(self.wake)

    def wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        nc: NATS | None = None
        try:
            async for attempt in retry.bus():
                with attempt:
                    if nc is None or nc.is_closed:
                        nc = await connect(self.url, name=self.name, credentials=self.credentials)
                        if self.credentials is None:
                            await ensure_stream(nc, self.settings)
                    await self._drain_forever(nc)
                outcome = attempt.retry_state.outcome
                error = outcome.exception() if outcome is not None and outcome.failed else None
                if isinstance(error, Exception):
                    # Warn once per outage, not once per retry.
                    (log.warning if self.connected or attempt.retry_state.attempt_number == 1 else log.debug)(
                        "event bus unreachable; events wait in the outbox",
                        error=str(error),
                        pending=len(self.outbox),
                    )
                    self.connected = False
                    if nc is not None:
                        await close_quietly(nc)
                        nc = None
        finally:
            self.connected = False
            if nc is not None:
                await close_quietly(nc)

    async def _drain_forever(self, nc: NATS) -> None:
        js = nc.jetstream()
        while True:
            self._wakeup.clear()
            batch = self.outbox.pending()
            for item in batch:
                payload = item.event.to_json()
                limit = nc.max_payload
                if limit and len(payload) + _HEADER_ROOM > limit:  # the server closes the connection
                    self._dead_letter(item, f"{len(payload)} bytes, over the server's max_payload of {limit}")
                    continue
                try:
                    await js.publish(
                        item.event.nats_subject,
                        payload,
                        timeout=2.0,
                        headers={"Nats-Msg-Id": item.event.id},
                    )
                except (MaxPayloadError, BadRequestError) as exc:  # no retry will ever change it
                    self._dead_letter(item, f"refused by NATS: {exc}")
                    continue
                except Exception as exc:
                    raise Unavailable(f"publish failed: {exc}") from exc
                self.outbox.ack(item)
            self.connected = True
            if batch:
                continue
            # Appends wake us at once; the timeout only bounds how stale `connected` can get.
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=5.0)
            except TimeoutError:
                if not nc.is_connected:
                    raise Unavailable("NATS connection lost") from None

    def _dead_letter(self, item: PendingEvent, reason: str) -> None:
        path = self.outbox.dead_letter(item, reason)
        log.error(
            "event set aside: the bus can never take it",
            event_id=item.event.id,
            subject=item.event.nats_subject,
            reason=reason,
            path=str(path),
            dead_letters=self.outbox.dead_count(),
        )

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty (for shutdown and tests); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.outbox):
            if asyncio.get_running_loop().time() > deadline:
                return False
            self.wake()
            await asyncio.sleep(0.05)
        return True


async def close_quietly(nc: NATS) -> None:
    # A broken connection may fail to close; it is gone either way.
    with contextlib.suppress(Exception):
        await nc.close()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the stream, with its stream sequence."""

    sequence: int
    event: Event


async def read_events(
    nc: NATS,
    settings: StreamSettings,
    *,
    since: datetime | None = None,
    start_sequence: int = 0,
    until: datetime | None = None,
    follow: bool = True,
) -> AsyncIterator[StoredEvent]:
    """Yield events from the stream in order.

    Starts at ``start_sequence`` if given, else at ``since``, else at the newest message.
    Stops after the last stored event when ``follow`` is false, and at the first event past
    ``until``. A message that is not a Dockyard CloudEvent is skipped (logged), never fatal.
    """
    js = nc.jetstream()
    if start_sequence:
        config = js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_sequence
        )
    elif since is not None:
        config = js_api.ConsumerConfig(
            deliver_policy=js_api.DeliverPolicy.BY_START_TIME, opt_start_time=since
        )
    else:
        config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.NEW)
    policy = config.deliver_policy
    try:
        info = await js.stream_info(settings.name)
    except Exception as exc:
        raise Unavailable(f"event stream unavailable: {exc}") from exc
    if not follow and (info.state.messages == 0 or policy == js_api.DeliverPolicy.NEW):
        return
    last_stored = info.state.last_seq
    sub = await js.subscribe(
        STREAM_SUBJECTS,
        stream=settings.name,
        ordered_consumer=True,
        config=config,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                if not follow:
                    return  # nothing at or after the start point
                if nc.is_closed:
                    raise Unavailable(
                        "lost the connection to NATS; resume with the last sequence + 1"
                    ) from None
                continue
            except Exception as exc:  # the connection or the consumer went away
                raise Unavailable(
                    f"event stream interrupted: {exc}; resume with the last sequence + 1"
                ) from exc
            seq = msg.metadata.sequence.stream
            try:
                event = Event.from_json(msg.data)
            except Exception:
                log.warning("skipping a message that is not a Dockyard event", sequence=seq)
                continue
            if until is not None and event.timestamp > until:
                return
            yield StoredEvent(seq, event)
            if not follow and (msg.metadata.num_pending == 0 or seq >= last_stored):
                return
    finally:
        with contextlib.suppress(Exception):  # on a dead connection there is nothing to undo
            await sub.unsubscribe()


class JetStreamSubscriber:
    """``events.Subscriber`` over the stream on an open connection (the caller owns ``nc``)."""

    def __init__(self, nc: NATS, settings: StreamSettings) -> None:
        self.nc = nc
        self.settings = settings

    async def subscribe(
        self, want: EventFilter, *, since: datetime | None = None, follow: bool = True
    ) -> AsyncIterator[Event]:
        # The filter runs here, not as a NATS subject filter: labels and entities are not in the subject.
        async for stored in read_events(self.nc, self.settings, since=since, follow=follow):
            if want.matches(stored.event):
                yield stored.event
