"""Named retry policies (tenacity), so every retry in Dockyard is one of a few known shapes.

- ``BUS``: reaching NATS/JetStream. Forever, backing off to 5 s: events wait in the outbox,
  nothing is lost, so there is no reason to give up.
- ``STARTUP``: waiting for a dependency to come up at start (a child service's port). Bounded
  by a deadline so a broken dependency fails start-up with a message instead of hanging.
"""

from __future__ import annotations

from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
    wait_exponential_jitter,
)


def bus(**overrides: Any) -> AsyncRetrying:
    """Retry forever with jittered backoff up to 5 s (for the outbox drainer)."""
    kwargs: dict[str, Any] = {
        "wait": wait_exponential_jitter(multiplier=0.2, max=5.0),
        # Exception, not BaseException: cancelling the drainer must stop it, not be retried.
        "retry": retry_if_exception_type(Exception),
        "reraise": True,
    }
    kwargs.update(overrides)
    return AsyncRetrying(**kwargs)


def startup(deadline_s: float = 30.0, **overrides: Any) -> AsyncRetrying:
    """Poll quickly until ``deadline_s`` has passed, then re-raise the last error."""
    kwargs: dict[str, Any] = {
        "wait": wait_exponential(multiplier=0.05, max=0.5),
        "stop": stop_after_delay(deadline_s),
        "reraise": True,
    }
    kwargs.update(overrides)
    return AsyncRetrying(**kwargs)
