"""The System service every Dockyard service answers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc

from dockyard.adapters.grpc.convert import info_to_pb
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.core.service import INSTANCE_ENV, ServiceInfo

SERVICE_NAME = system_pb2.DESCRIPTOR.services_by_name["System"].full_name


class SystemServicer(system_pb2_grpc.SystemServicer):
    """Answers Info from a callable, so the answer can reflect live state.

    The answer carries the platform instance this process was started for (``$DOCKYARD_INSTANCE_ID``,
    read once here, set by ``dockyard up``) unless the info names one itself: that is how the
    supervisor tells its own child from another platform's service at the same address.
    """

    def __init__(self, info: Callable[[], ServiceInfo], instance_id: str | None = None) -> None:
        self._info = info
        self._instance = os.environ.get(INSTANCE_ENV, "") if instance_id is None else instance_id

    async def Info(
        self, request: system_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> system_pb2.InfoResponse:
        info = self._info()
        if not info.instance_id and self._instance:
            info = replace(info, instance_id=self._instance)
        return info_to_pb(info)


def registration(info: Callable[[], ServiceInfo]) -> tuple[Any, SystemServicer, str]:
    """The ``(add, servicer, name)`` triple ``GrpcServer`` takes."""
    return system_pb2_grpc.add_SystemServicer_to_server, SystemServicer(info), SERVICE_NAME
