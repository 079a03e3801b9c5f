"""The builder's composition root: config in, a ServiceHost with the Builds service out.

State (``--state-dir``)::

    <state>/
      cache.json       the build cache (dockyard.builder.cache)
      scratch/         one dir per build in progress: the unpacked context, COPY --from files;
                       removed when the build ends, emptied at start
      outbox/          events not yet on JetStream

The builder holds no images: every step's result is an image in the runtime node's store,
reached at ``--runtime`` (default: the runtime's socket beside ours under ``dockyard up``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.api.builds.v1 import builds_pb2, builds_pb2_grpc
from dockyard.builder.download import MAX_DOWNLOAD
from dockyard.builder.engine import Builder
from dockyard.builder.inflight import InFlight, sweep_steps
from dockyard.builder.remote import RemoteRuntime
from dockyard.builder.servicer import BuildsServicer
from dockyard.core.service import ServiceInfo, ServiceState


@dataclass(frozen=True, slots=True)
class BuilderConfig:
    host: HostConfig
    runtime: str  # the runtime node's gRPC address
    max_download: int = MAX_DOWNLOAD  # bytes one ADD <url> may fetch


class _Closer:
    """Start: settle what a killed builder left (dockyard.builder.inflight); stop: close the channel."""

    def __init__(self, runtime: RemoteRuntime, inflight: InFlight) -> None:
        self.runtime = runtime
        self.inflight = inflight
        self._sweep: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.inflight.settle)
        self._sweep = asyncio.create_task(
            sweep_steps(self.runtime.step_containers, self.runtime.remove_container), name="step-sweep"
        )

    async def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            await asyncio.gather(self._sweep, return_exceptions=True)
        await self.runtime.close()


def build(config: BuilderConfig) -> ServiceHost:
    info = ServiceInfo(
        "builder",
        ServiceState.SERVING,
        node=config.host.node,
        details={"runtime": config.runtime},
    )
    host = ServiceHost(config.host, lambda: info)
    runtime = RemoteRuntime(config.runtime)
    builder = Builder(runtime, config.host.state_dir, registry=runtime, max_download=config.max_download)
    inflight = InFlight(config.host.state_dir / "inflight", host.publisher, config.host.source)
    host.server.add_servicer(
        builds_pb2_grpc.add_BuildsServicer_to_server,
        BuildsServicer(builder, host.publisher, config.host.source, inflight, runtime.ready),
        builds_pb2.DESCRIPTOR.services_by_name["Builds"].full_name,
    )
    host.add_component(_Closer(runtime, inflight))
    return host
