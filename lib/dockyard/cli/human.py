"""How docker's verbs show things to people: sizes, ages, statuses, ports, short ids.

Pure functions over plain values (no grpc, no generated types) so they are cheap to import and
easy to test. The shapes follow the docker CLI: "1.24MB", "2 minutes ago", "Up 3 seconds",
"Exited (0) 5 seconds ago", "0.0.0.0:8080->80/tcp", 12-character ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

NONE = "<none>"
MISSING = "<missing>"
_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


class _Timestamp(Protocol):
    seconds: int
    nanos: int


class _Port(Protocol):
    host_port: int
    container_port: int
    protocol: str
    host_ip: str


def human_size(size: float, precision: int = 3) -> str:
    """Decimal units with ``precision`` significant digits, as docker prints sizes: "1.24MB", "0B"."""
    unit = 0
    while size >= 1000 and unit < len(_SIZE_UNITS) - 1:
        size /= 1000.0
        unit += 1
    return f"{size:.{precision}g}{_SIZE_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """An elapsed time in words, coarse like docker's: "Less than a second", "About an hour", "3 days"."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = secs // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def epoch(ts: _Timestamp | None) -> float | None:
    """Seconds since the epoch of a protobuf Timestamp, or None when it is unset (zero)."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.seconds + ts.nanos / 1e9


def ago(when: float | None, now: float | None = None) -> str:
    """ "2 minutes ago"; "N/A" for an unset time."""
    if when is None:
        return "N/A"
    return human_duration(max(0.0, (time.time() if now is None else now) - when)) + " ago"


def rfc3339(when: float | None, nanos: int | None = None) -> str:
    """A time as RFC 3339 in UTC with nanoseconds when known ("2026-11-22T05:00:00.123456789Z")."""
    if when is None:
        return ""
    stamp = datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos is None:
        nanos = round((when - int(when)) * 1e9)
    return f"{stamp}.{nanos:09d}Z"


def short_id(ident: str, no_trunc: bool = False) -> str:
    """Docker's 12-hex-character id, from "sha256:<hex>" or a bare hex id; whole with ``no_trunc``."""
    if no_trunc:
        return ident
    return ident.split(":", 1)[-1][:12]


def ellipsis(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one "…" when it was cut."""
    if width <= 0 or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def command_column(argv: Sequence[str], no_trunc: bool = False, width: int = 20) -> str:
    """The COMMAND column of ``ps``: the command line, cut to ``width``, in double quotes."""
    text = " ".join(argv)
    if not no_trunc:
        text = ellipsis(text, width)
    return json.dumps(text, ensure_ascii=False)


def state_name(state: int) -> str:
    """A ContainerState number as docker's State word."""
    return {1: "created", 2: "running", 3: "paused", 4: "exited", 5: "dead"}.get(state, "unknown")


def status_column(
    state: int,
    exit_code: int = 0,
    started: float | None = None,
    finished: float | None = None,
    now: float | None = None,
) -> str:
    """docker's STATUS: "Created", "Up 3 seconds", "Up 2 minutes (Paused)", "Exited (0) 5 seconds ago"."""
    now = time.time() if now is None else now
    name = state_name(state)
    if name in ("running", "paused"):
        up = "Up " + (human_duration(now - started) if started else "Less than a second")
        return up + " (Paused)" if name == "paused" else up
    if name == "exited":
        if finished is None:
            return f"Exited ({exit_code})"
        return f"Exited ({exit_code}) {human_duration(max(0.0, now - finished))} ago"
    if name == "dead":
        return "Dead"
    if name == "created":
        return "Created"
    return "Unknown"


def port_column(ports: Iterable[_Port]) -> str:
    """docker's PORTS: "0.0.0.0:8080->80/tcp, 0.0.0.0:8443->443/tcp"."""
    parts = []
    for p in ports:
        proto = p.protocol or "tcp"
        if p.host_port:
            parts.append(f"{_host(p.host_ip)}:{p.host_port}->{p.container_port}/{proto}")
        else:
            parts.append(f"{p.container_port}/{proto}")
    return ", ".join(parts)


def port_lines(ports: Iterable[_Port], private: str | None = None) -> list[str]:
    """``docker port``: "80/tcp -> 0.0.0.0:8080"; with ``private`` ("80" or "80/udp") only its host side."""
    want_port, want_proto = None, None
    if private:
        port_text, _, want_proto = private.partition("/")
        want_port = int(port_text)
        want_proto = want_proto or "tcp"
    lines = []
    for p in ports:
        if not p.host_port:
            continue
        proto = p.protocol or "tcp"
        if want_port is None:
            lines.append(f"{p.container_port}/{proto} -> {_host(p.host_ip)}:{p.host_port}")
        elif p.container_port == want_port and proto == want_proto:
            lines.append(f"{_host(p.host_ip)}:{p.host_port}")
    return lines


def _host(ip: str) -> str:
    if not ip:
        return "0.0.0.0"
    return f"[{ip}]" if ":" in ip else ip


def split_repo_tag(reference: str) -> tuple[str, str]:
    """ "repo:tag" into (repo, tag); "<none>" for a missing part. A registry's port is not a tag."""
    if not reference or reference.startswith(("<none>", "sha256:")):
        return NONE, NONE
    name = reference.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, NONE


def json_line(value: Any) -> str:
    """One JSON object on one line, as ``docker … --format json`` prints each row."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def confirm(prompt: str) -> bool:
    """Ask y/N on the terminal like docker's prune; anything but y/yes is no (and so is EOF)."""
    import sys

    print(f"{prompt} [y/N] ", end="", flush=True, file=sys.stderr)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")
