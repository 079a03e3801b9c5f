"""Health checks and restart policies at the gRPC edge: ContainerSpec/Container fields ⇄ the record.

The record keeps docker's shapes (``Healthcheck`` with nanosecond durations, ``State.Health``); the
API has typed messages (``HealthConfig`` with Durations, ``Health`` with Timestamps).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.core.errors import InvalidArgument

_Duration = Literal["interval", "timeout", "start_period"]
_DURATIONS: tuple[tuple[str, _Duration], ...] = (
    ("Interval", "interval"),
    ("Timeout", "timeout"),
    ("StartPeriod", "start_period"),
)


def healthcheck_from_pb(spec: cpb.ContainerSpec) -> dict[str, Any]:
    """The spec's health check in docker's shape; {} when it has none (the image's applies)."""
    if not spec.HasField("healthcheck"):
        return {}
    h = spec.healthcheck
    out: dict[str, Any] = {}
    if h.test:
        out["Test"] = list(h.test)
    for key, field in _DURATIONS:
        if h.HasField(field):
            ns = getattr(h, field).ToNanoseconds()
            if ns < 0:
                raise InvalidArgument(f"health check: {field.replace('_', ' ')} cannot be negative")
            if ns:
                out[key] = ns
    if h.retries < 0:
        raise InvalidArgument("health check: retries cannot be negative")
    if h.retries:
        out["Retries"] = h.retries
    return out


def healthcheck_to_pb(check: dict[str, Any], out: cpb.HealthConfig) -> None:
    out.test.extend(check.get("Test") or [])
    for key, field in _DURATIONS:
        if check.get(key):
            getattr(out, field).FromNanoseconds(int(check[key]))
    out.retries = int(check.get("Retries") or 0)


def fill_container_pb(record: Any, msg: cpb.Container) -> None:
    """Set the health and restart fields of ``msg`` from ``record`` (a ContainerRecord)."""
    config = record.config
    if config.restart_policy:
        msg.spec.restart_policy = config.restart_policy
    if config.healthcheck:
        healthcheck_to_pb(config.healthcheck, msg.spec.healthcheck)
    msg.restart_count = record.restart_count
    msg.restarting = record.restarting
    health = record.health or {}
    if health:
        msg.health.status = str(health.get("Status") or "")
        msg.health.failing_streak = int(health.get("FailingStreak") or 0)
        for entry in health.get("Log") or []:
            result = msg.health.log.add(
                exit_code=int(entry.get("ExitCode", -1)), output=entry.get("Output", "")
            )
            for key, field in (("Start", "start"), ("End", "end")):
                if entry.get(key):
                    getattr(result, field).FromDatetime(datetime.fromisoformat(entry[key]))
