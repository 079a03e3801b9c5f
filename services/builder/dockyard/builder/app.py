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

from dataclasses import dataclass

from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.api.builds.v1 import builds_pb2, builds_pb2_grpc
from dockyard.builder.download import MAX_DOWNLOAD
from dockyard.builder.engine import Builder
from dockyard.builder.remote import RemoteRuntime
from dockyard.builder.servicer import BuildsServicer
from dockyard.core.service import ServiceInfo, ServiceState


@dataclass(frozen=True, slots=True)
class BuilderConfig:
    host: HostConfig
    runtime: str  # the runtime node's gRPC address
    max_download: int = MAX_DOWNLOAD  # bytes one ADD <url> may fetch


class _Closer:
    def __init__(self, runtime: RemoteRuntime) -> None:
        self.runtime = runtime

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
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
    host.server.add_servicer(
        builds_pb2_grpc.add_BuildsServicer_to_server,
        BuildsServicer(builder, host.publisher, config.host.source),
        builds_pb2.DESCRIPTOR.services_by_name["Builds"].full_name,
    )
    host.add_component(_Closer(runtime))
    return host
