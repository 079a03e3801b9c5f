"""The System service every Dockyard service answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from dockyard.adapters.grpc.convert import info_to_pb
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.core.service import ServiceInfo

SERVICE_NAME = system_pb2.DESCRIPTOR.services_by_name["System"].full_name


class SystemServicer(system_pb2_grpc.SystemServicer):
    """Answers Info from a callable, so the answer can reflect live state."""

    def __init__(self, info: Callable[[], ServiceInfo]) -> None:
        self._info = info

    async def Info(
        self, request: system_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> system_pb2.InfoResponse:
        return info_to_pb(self._info())


def registration(info: Callable[[], ServiceInfo]) -> tuple[Any, SystemServicer, str]:
    """The ``(add, servicer, name)`` triple ``GrpcServer`` takes."""
    return system_pb2_grpc.add_SystemServicer_to_server, SystemServicer(info), SERVICE_NAME
