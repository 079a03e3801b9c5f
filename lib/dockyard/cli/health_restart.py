"""``run``/``create``'s health-check and restart-policy flags, and how ``ps`` shows them.

Flags as docker's: ``--restart no|always|unless-stopped|on-failure[:N]`` (checked by the runtime,
which also refuses it with ``--rm``), ``--health-cmd CMD`` (run with /bin/sh -c),
``--health-interval/--health-timeout/--health-start-period DURATION`` (Go durations: "30s",
"1m30s", "500ms"; 0 keeps the image's), ``--health-retries N``, ``--no-healthcheck`` (disables the
image's HEALTHCHECK; it conflicts with the others). Standard library only at import time.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_HEALTH_FLAGS = ("health_cmd", "health_interval", "health_timeout", "health_start_period", "health_retries")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--restart",
        default="",
        metavar="POLICY",
        help="restart policy: no, always, unless-stopped, on-failure[:max-retries] (default no)",
    )
    a("--health-cmd", default=None, metavar="CMD", help="command that checks health (run by /bin/sh -c)")
    a("--health-interval", default=None, metavar="DURATION", help="time between checks (default 30s)")
    a("--health-timeout", default=None, metavar="DURATION", help="a check taking longer fails (default 30s)")
    a(
        "--health-start-period",
        default=None,
        metavar="DURATION",
        help="failures this soon after the start do not count until a check passes (default 0s)",
    )
    a(
        "--health-retries",
        default=None,
        metavar="N",
        help="failures in a row for unhealthy (default 3)",
    )
    a("--no-healthcheck", action="store_true", help="disable the image's HEALTHCHECK")


def parse_duration(text: str, flag: str) -> int:
    """A Go duration ("1m30s", "500ms", "2h", "0") in nanoseconds; InvalidArgument naming ``flag``."""
    from dockyard.core.errors import InvalidArgument

    value = text.strip()
    if value == "0":
        return 0
    if value.startswith("-"):
        raise InvalidArgument(f"{flag} cannot be negative: {text!r}")
    pos, total = 0, 0.0
    while pos < len(value):
        match = _PART.match(value, pos)
        if match is None:
            raise InvalidArgument(f"bad {flag} {text!r}: use a duration like 30s, 1m30s or 500ms")
        total += float(match[1]) * _UNIT_NS[match[2]]
        pos = match.end()
    if not value:
        raise InvalidArgument(f"bad {flag} {text!r}: use a duration like 30s, 1m30s or 500ms")
    return round(total)


def apply(args: argparse.Namespace, spec: Any) -> None:
    """Set ``spec`` (a ContainerSpec)'s restart_policy and healthcheck from the parsed flags."""
    from dockyard.core.errors import InvalidArgument

    if args.restart:
        spec.restart_policy = args.restart
    given = [f for f in _HEALTH_FLAGS if getattr(args, f) is not None]
    if args.no_healthcheck:
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise InvalidArgument(f"--no-healthcheck conflicts with {flags}")
        spec.healthcheck.test.append("NONE")
        return
    if not given:
        return
    check = spec.healthcheck
    if args.health_cmd is not None:
        if not args.health_cmd.strip():
            raise InvalidArgument("--health-cmd is empty")
        check.test.extend(["CMD-SHELL", args.health_cmd])
    for flag in ("health_interval", "health_timeout", "health_start_period"):
        text = getattr(args, flag)
        if text is not None:
            ns = parse_duration(text, "--" + flag.replace("_", "-"))
            if 0 < ns < 1_000_000:
                raise InvalidArgument(
                    f"--{flag.replace('_', '-')} must be at least 1ms (or 0 for the default)"
                )
            getattr(check, flag.removeprefix("health_")).FromNanoseconds(ns)
    if args.health_retries is not None:
        from dockyard.cli.limits import INT32_MAX, integer

        if args.health_retries.strip().startswith("-"):
            raise InvalidArgument("--health-retries cannot be negative")
        check.retries = integer(args.health_retries, "--health-retries", low=0, high=INT32_MAX)
    if not spec.HasField("healthcheck"):
        spec.healthcheck.SetInParent()


def status(c: Any, base: str, now: float | None = None) -> str:
    """``ps``'s STATUS with the health and restart state: "Up 5 seconds (healthy)",
    "Up 2 seconds (health: starting)", "Restarting (1) 3 seconds ago"."""
    from dockyard.cli import human

    state = human.state_name(c.state)
    if getattr(c, "restarting", False) and state in ("exited", "dead"):
        finished = human.epoch(c.finished)
        when = f" {human.ago(finished, now)}" if finished is not None else ""
        return f"Restarting ({c.exit_code}){when}"
    if state == "running" and c.HasField("health") and c.health.status:
        word = c.health.status
        return f"{base} ({'health: starting' if word == 'starting' else word})"
    return base


def inspect_defaults(c: Any, out: dict[str, Any]) -> None:
    """What ``inspect`` shows even at its zero value, as docker does: ``restartCount`` and each
    health check's ``exitCode`` (proto JSON leaves zeros out)."""
    out["restartCount"] = c.restart_count
    out["restarting"] = c.restarting
    if "health" in out:
        out["health"].setdefault("failingStreak", 0)
        for entry in out["health"].get("log", []):
            entry.setdefault("exitCode", 0)
