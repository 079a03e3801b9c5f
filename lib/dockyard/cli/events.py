"""``dockyard events``: like ``docker events``, but able to reach back past any restart.

Without --since/--until it follows new events. --since replays from that point and then
follows; --until stops at that time. Times are RFC 3339 (2026-11-22T05:00:00Z), Unix
seconds, or a duration back from now (90s, 10m, 2h, 7d). ``--format`` is text, json (the
CloudEvent), or a Go template over docker's event fields (``{{.Type}} {{.Action}} {{.Actor.ID}}``,
``{{json .}}``), see :func:`docker_event`.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help="show events from this time (RFC 3339, Unix seconds, or 10m/2h/7d ago)"
    )
    parser.add_argument("--until", help="stop at this time (same forms); without it, follow")
    parser.add_argument(
        "--sequence", default="0", help="replay from this stream sequence (resume after a disconnect)"
    )
    parser.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="type=, action=, entity=, label=k[=v]; repeat (same key ORs, different keys AND)",
    )
    parser.add_argument(
        "--format",
        default="text",
        help="text, json (one CloudEvent a line), or a Go template: '{{.Type}} {{.Action}} {{.Actor.ID}}'",
    )


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """Parse a user's time; raises InvalidArgument with the accepted forms."""
    from dockyard.core.errors import InvalidArgument

    now = now or datetime.now(UTC)
    text = value.strip()
    try:
        if match := _DURATION.match(text):
            return now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    except OverflowError:  # "99999999999999999d": before year 1
        raise InvalidArgument(f"bad time {value!r}: the duration is too long") from None
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (OverflowError, OSError):
        raise InvalidArgument(f"bad time {value!r}: out of range") from None
    except ValueError:
        if text.replace(".", "", 1).lstrip("-").isdigit():  # a number past year 9999
            raise InvalidArgument(f"bad time {value!r}: out of range") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"bad time {value!r}: use RFC 3339 (2026-11-22T05:00:00Z), Unix seconds, or a duration like 10m"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    import grpc

    from dockyard.adapters.grpc.convert import timestamp
    from dockyard.api.events.v1 import events_pb2, events_pb2_grpc
    from dockyard.cli import gofmt
    from dockyard.cli.client import channel
    from dockyard.cli.limits import integer
    from dockyard.core.events import EventFilter

    EventFilter.parse(args.filter)  # a bad filter is the user's mistake: say so before dialling
    gofmt.check(args.format)
    sequence = integer(str(args.sequence), "--sequence", low=0, high=(1 << 64) - 1)
    request = events_pb2.SubscribeRequest(filters=args.filter, start_sequence=sequence)
    if args.since:
        request.since.CopyFrom(timestamp(parse_time(args.since)))
    if args.until:
        request.until.CopyFrom(timestamp(parse_time(args.until)))
    with channel(args.host) as ch:
        stream = events_pb2_grpc.EventsStub(ch).Subscribe(request)
        try:
            for event in stream:
                print(_render(event, args.format), flush=True)
        except KeyboardInterrupt:
            stream.cancel()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise
    return 0


def docker_event(event: object) -> object:
    """What an ``events --format`` template sees: docker's message fields (Type, Action and Status
    in docker's words, Actor.ID, Actor.Attributes, ID, From, Scope, Time, TimeNano) plus Subject,
    Source, Sequence, the event's Data and DockyardAction (the word ``--filter action=`` takes)."""
    import json

    from dockyard.cli.gofmt import struct
    from dockyard.client.dockerjson import DOCKER_ACTIONS

    kind = getattr(event, "type", "")
    _, area, action = ("", "", "", *kind.rsplit(".", 2))[-3:]
    labels = dict(getattr(event, "labels", {}))
    time = getattr(event, "time", None)
    seconds, nanos = (time.seconds, time.nanos) if time is not None else (0, 0)
    try:
        data = json.loads(getattr(event, "data_json", "") or "null")
    except ValueError:
        data = getattr(event, "data_json", "")
    subject = getattr(event, "subject", "")
    docker_action = DOCKER_ACTIONS.get(action, action)
    if area == "image" and action == "removed":
        docker_action = "delete"
    return struct(
        "*events.Message",
        {
            "Type": area,
            "Action": docker_action,
            "Actor": struct("events.Actor", {"ID": subject, "Attributes": labels}),
            "ID": subject,
            "Status": docker_action,
            "DockyardAction": action,
            "From": labels.get("image", ""),
            "Scope": "local",
            "Time": seconds,
            "TimeNano": seconds * 1_000_000_000 + nanos,
            "Subject": subject,
            "Source": getattr(event, "source", ""),
            "Sequence": getattr(event, "sequence", 0),
            "Data": data,
        },
    )


def _render(event: object, fmt: str) -> str:
    from dockyard.api.events.v1 import events_pb2
    from dockyard.cli import gofmt

    assert isinstance(event, events_pb2.Event)
    if gofmt.is_template(fmt):
        return gofmt.render(fmt, [docker_event(event)]).removesuffix("\n")
    if fmt.strip() == "json":
        return event.cloudevent_json
    _, area, action = event.type.rsplit(".", 2)
    when = event.time.ToDatetime(tzinfo=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    labels = ", ".join(f"{k}={v}" for k, v in sorted(event.labels.items()))
    source = event.source.rsplit("/", 2)
    origin = f"{source[-2]}@{source[-1]}" if len(source) >= 3 else event.source
    suffix = f" ({labels})" if labels else ""
    return f"{when} {area} {action} {event.subject} [{origin}] seq={event.sequence}{suffix}"
