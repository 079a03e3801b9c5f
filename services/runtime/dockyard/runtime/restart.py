"""Restart policies: docker's ``--restart no|on-failure[:N]|always|unless-stopped``, with its back-off.

The decision is docker's restart manager's, made when a container exits:

- ``always`` and ``unless-stopped`` restart it whatever its exit code; ``on-failure`` only after a
  non-zero exit, and at most N times (``on-failure`` alone, or N = 0: no limit); ``no`` never.
- The delay before a restart starts at 100 ms and doubles with each restart, up to one minute; a
  container that ran for 10 s or more starts again from 100 ms.
- A stop by the user (``stop``, ``kill`` with SIGKILL or the container's stop signal, ``rm -f``,
  ``restart``'s stop half) cancels a pending restart and suppresses restarts until the container is
  started again, whatever the policy. Docker brings a user-stopped ``always`` container back when
  its daemon restarts; here containers outlive the service, a restart of the service is no event a
  user sees, and so a user's stop holds across it.

What is kept in the container's record (``ContainerRecord``), so that it survives a restart of the
service (``kill -9``, ``dockyard up`` stopped and started again)::

    restart_count   restarts made by the policy since the user last started it (docker's
                    RestartCount; on-failure:N counts against it)
    restarting      the container exited and a restart is due (shown as "Restarting")
    manual_stop     the user stopped it; no restarts until the next start

When the service starts (:meth:`RestartPolicies.recover`), a container that exited while it was
down goes through the same decision as any exit (the manager records the exit first), a restart
that was due when the previous service died is made, and an ``always``/``unless-stopped`` container
that has run before and is not running, and that the user did not stop, is started.

The back-off delay itself lives in memory: a new service starts again from 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from dockyard.core.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.runtime.lifecycle import Lifecycle
    from dockyard.runtime.records import ContainerConfig, LiveContainer

log = structlog.get_logger(__name__)

NO = "no"
ALWAYS = "always"
UNLESS_STOPPED = "unless-stopped"
ON_FAILURE = "on-failure"
POLICIES = (NO, ALWAYS, UNLESS_STOPPED, ON_FAILURE)

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 60.0
RESET_AFTER_S = 10.0

_ACTIVE = ("running", "paused")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """A parsed ``--restart`` value."""

    name: str = NO
    max_retries: int = 0  # on-failure only; 0 is no limit

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """``no``, ``always``, ``unless-stopped``, ``on-failure`` or ``on-failure:N``; InvalidArgument
        with one line naming the accepted forms otherwise."""
        value = (text or NO).strip()
        name, sep, count = value.partition(":")
        if name not in POLICIES:
            raise InvalidArgument(
                f"invalid restart policy {value!r}: "
                "use no, always, unless-stopped or on-failure[:max-retries]"
            )
        if not sep:
            return cls(name)
        if name != ON_FAILURE:
            raise InvalidArgument(
                f"invalid restart policy {value!r}: a maximum retry count goes with on-failure only"
            )
        if not count.isdigit():
            raise InvalidArgument(
                f"invalid restart policy {value!r}: the maximum retry count must be a number ≥ 0"
            )
        return cls(name, int(count))

    def __str__(self) -> str:
        return (
            f"{self.name}:{self.max_retries}" if self.name == ON_FAILURE and self.max_retries else self.name
        )

    def should_restart(self, exit_code: int, restart_count: int, manual_stop: bool) -> bool:
        """Whether a container that exited with ``exit_code`` is started again (docker's rule)."""
        if manual_stop or self.name == NO:
            return False
        if self.name in (ALWAYS, UNLESS_STOPPED):
            return True
        return exit_code != 0 and (self.max_retries == 0 or restart_count < self.max_retries)


def next_delay(previous: float, ran_s: float) -> float:
    """The back-off before the next restart, given the previous one (0: none yet) and how long the
    container ran: 100 ms, doubling, at most a minute; back to 100 ms after a run of 10 s or more."""
    if ran_s >= RESET_AFTER_S or previous <= 0:
        return FIRST_DELAY_S
    return min(previous * 2, MAX_DELAY_S)


def validate(config: ContainerConfig) -> ContainerConfig:
    """``config`` with its restart policy in canonical form; refuses ``--rm`` with a policy."""
    policy = RestartPolicy.parse(config.restart_policy)
    if config.auto_remove and policy.name != NO:
        raise InvalidArgument(
            f"conflicting options: --restart {policy} and --rm (a container removed when it exits "
            "cannot be restarted)"
        )
    return replace(config, restart_policy=str(policy))


def _ran_seconds(started: str, finished: str) -> float:
    try:
        return max(0.0, (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds())
    except ValueError:
        return 0.0


class RestartPolicies:
    """Applies each container's restart policy (the manager calls the hooks)."""

    def __init__(self, manager: Lifecycle) -> None:
        self.m = manager
        self._delay: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._sleeping: set[str] = set()

    # --- hooks the manager calls ---------------------------------------------------------------------

    def user_start(self, live: LiveContainer) -> None:
        """The user starts the container: it counts from zero again and a manual stop is forgotten."""
        record = live.record
        if record.state in _ACTIVE:
            return
        self._cancel_sleeping(record.id)
        self._delay.pop(record.id, None)
        if record.manual_stop or record.restart_count or record.restarting:
            self.m.save(replace(record, manual_stop=False, restart_count=0, restarting=False))

    async def user_stop(self, live: LiveContainer) -> None:
        """The user stops, kills or removes the container: no restart until it is started again.

        Persisted before any signal is sent, so the exit it causes is not restarted. A restart that
        is already starting the container is let finish (the caller then stops what it started)."""
        cid = live.record.id
        self._cancel_sleeping(cid)
        task = self._pending.get(cid)
        if task is not None and not task.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(task)
        record = live.record
        if not record.manual_stop or record.restarting:
            self.m.save(replace(record, manual_stop=True, restarting=False))

    async def user_kill(self, live: LiveContainer, number: int) -> None:
        """``kill``: SIGKILL or the container's stop signal is a stop by the user (as docker)."""
        stop_signal = int(signal.SIGTERM)
        with contextlib.suppress(InvalidArgument, ValueError):
            if live.record.config.stop_signal:
                from dockyard.runtime import runflags

                stop_signal = runflags.parse_signal(live.record.config.stop_signal)
        if number in (signal.SIGKILL, stop_signal):
            await self.user_stop(live)

    async def removing(self, live: LiveContainer, force: bool) -> None:
        """``rm``: nothing is restarted once removal is under way (``rm`` without -f of a running
        container is refused, so it changes nothing)."""
        if force or live.record.state not in _ACTIVE:
            await self.user_stop(live)

    def started(self, live: LiveContainer) -> None:
        record = live.record
        if record.restarting:
            self.m.save(replace(record, restarting=False))

    def exited(self, live: LiveContainer, delay: float | None = None) -> None:
        """The container exited (its exit is recorded): restart it after the back-off, if its policy says."""
        record = live.record
        if record.id in self._pending and not self._pending[record.id].done():
            return  # a restart is already due (adoption can report an exit twice)
        try:
            policy = RestartPolicy.parse(record.config.restart_policy)
        except InvalidArgument:
            return
        if record.config.auto_remove or not policy.should_restart(
            record.exit_code, record.restart_count, record.manual_stop
        ):
            if record.restarting:
                self.m.save(replace(record, restarting=False))
            return
        if delay is None:
            delay = next_delay(self._delay.get(record.id, 0.0), _ran_seconds(record.started, record.finished))
        self._delay[record.id] = delay
        record = self.m.save(replace(record, restart_count=record.restart_count + 1, restarting=True))
        log.info(
            "restart due",
            id=record.short_id,
            name=record.name,
            policy=str(policy),
            exit_code=record.exit_code,
            count=record.restart_count,
            in_s=delay,
        )
        self._schedule(live, delay)

    def recover(self) -> None:
        """After the manager adopted what a previous service left: make the restarts it owed."""
        for live in list(self.m.live.values()):
            record = live.record
            if record.state in _ACTIVE or record.manual_stop or record.config.auto_remove:
                continue
            try:
                policy = RestartPolicy.parse(record.config.restart_policy)
            except InvalidArgument:
                continue
            comes_back = policy.name in (ALWAYS, UNLESS_STOPPED) and bool(record.started)
            if record.restarting or comes_back:
                log.info("restarting after the service restart", id=record.short_id, name=record.name)
                self._schedule(live, 0.0, clean=True)

    async def close(self) -> None:
        """Stop scheduling (a due restart stays recorded; the next service makes it)."""
        tasks = list(self._pending.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()

    # --- the restart itself --------------------------------------------------------------------------

    def _schedule(self, live: LiveContainer, delay: float, *, clean: bool = False) -> None:
        cid = live.record.id
        old = self._pending.get(cid)
        if old is not None and not old.done():
            return
        task = asyncio.create_task(self._restart_after(live, delay, clean))
        self._pending[cid] = task

        def forget(t: asyncio.Task[Any]) -> None:
            if self._pending.get(cid) is t:
                del self._pending[cid]

        task.add_done_callback(forget)

    def _cancel_sleeping(self, cid: str) -> None:
        task = self._pending.get(cid)
        if task is not None and cid in self._sleeping:
            task.cancel()

    async def _restart_after(self, live: LiveContainer, delay: float, clean: bool) -> None:
        cid = live.record.id
        self._sleeping.add(cid)
        try:
            await asyncio.sleep(delay)
        finally:
            self._sleeping.discard(cid)
        if self.m.live.get(cid) is not live or live.record.manual_stop:
            return
        async with live.lock:
            if live.record.state in _ACTIVE or live.record.manual_stop:
                return
            try:
                if clean:  # a previous service may have died half-way through this start
                    await self.m.monitor.delete(cid)
                await self.m.start_locked(live, None)
            except Exception as exc:  # as docker: a restart that cannot start gives up, recorded
                log.warning("restart failed", id=live.record.short_id, name=live.record.name, error=str(exc))
                self.m.save(replace(live.record, restarting=False))
