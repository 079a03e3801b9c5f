"""Core values <-> protobuf messages. pb2 types stop here; nothing in the core imports them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from dockyard.api.events.v1 import events_pb2
from dockyard.api.system.v1 import system_pb2
from dockyard.core.events import Event
from dockyard.core.service import ServiceInfo, ServiceState

_STATE_TO_PB = {
    ServiceState.SERVING: system_pb2.SERVICE_STATE_SERVING,
    ServiceState.NOT_IMPLEMENTED: system_pb2.SERVICE_STATE_NOT_IMPLEMENTED,
    ServiceState.NOT_SERVING: system_pb2.SERVICE_STATE_NOT_SERVING,
    ServiceState.UNREACHABLE: system_pb2.SERVICE_STATE_UNREACHABLE,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime | None:
    """None for an unset timestamp (proto3 has no presence for zero)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def info_to_pb(info: ServiceInfo) -> system_pb2.InfoResponse:
    return system_pb2.InfoResponse(
        service=info.service,
        version=info.version,
        state=_STATE_TO_PB[info.state],
        message=info.message,
        node=info.node,
        started_at=timestamp(info.started_at),
        details=dict(info.details),
        instance_id=info.instance_id,
    )


def info_from_pb(pb: system_pb2.InfoResponse) -> ServiceInfo:
    return ServiceInfo(
        service=pb.service,
        state=_STATE_FROM_PB.get(pb.state, ServiceState.NOT_SERVING),
        message=pb.message,
        version=pb.version,
        node=pb.node,
        started_at=from_timestamp(pb.started_at) or datetime.now(UTC),
        details=dict(pb.details),
        instance_id=pb.instance_id,
    )


def event_to_pb(event: Event, sequence: int) -> events_pb2.Event:
    return events_pb2.Event(
        id=event.id,
        source=event.source,
        type=event.type,
        subject=event.subject,
        time=timestamp(event.timestamp),
        data_json=json.dumps(dict(event.data), sort_keys=True),
        labels=dict(event.labels),
        sequence=sequence,
        cloudevent_json=event.to_json().decode(),
    )
