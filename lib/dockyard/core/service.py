"""What a service says about itself (System.Info), independent of gRPC."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

VERSION = "0.1.0"
INSTANCE_ENV = "DOCKYARD_INSTANCE_ID"  # set by `dockyard up` in each child's environment


class ServiceState(StrEnum):
    SERVING = "serving"
    NOT_IMPLEMENTED = "not_implemented"
    NOT_SERVING = "not_serving"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    service: str
    state: ServiceState
    message: str = ""
    version: str = VERSION
    node: str = field(default_factory=socket.gethostname)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    details: Mapping[str, str] = field(default_factory=dict)
    instance_id: str = ""  # the `dockyard up` run this process belongs to ("" when run alone)


def event_source(service: str, node: str) -> str:
    """The CloudEvents ``source`` of a service instance."""
    return f"/dockyard/{service}/{node}"
