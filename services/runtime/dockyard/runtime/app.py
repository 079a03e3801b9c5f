"""Composition root of the runtime: image store, snapshots, monitor, network → containers → gRPC.

Runs inside the node namespace (see ``userns``): the rootless facts were decided by the
real user before entering it and are passed in, never re-probed from inside.

    <state-dir>/
      pause.pid  facts.json  outbox/
      images/        the image store (dockyard.runtime.images.store)
      snapshots/     container writable layers (dockyard.runtime.snapshot)
      containers/    container records, bundles, logs (dockyard.runtime.containers)
      volumes/       named and anonymous volumes (dockyard.runtime.volumes)
      networks/      user networks, endpoints, the node network namespace (dockyard.runtime.networks)
      runc/          runc's own state (--root)
      auth.json      registry credentials, 0600
"""

from __future__ import annotations

import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.api.containers.v1 import containers_pb2, containers_pb2_grpc
from dockyard.api.images.v1 import images_pb2, images_pb2_grpc
from dockyard.api.networks.v1 import networks_pb2, networks_pb2_grpc  # networks
from dockyard.api.volumes.v1 import volumes_pb2, volumes_pb2_grpc
from dockyard.core import cgroups as cgroup_delegation
from dockyard.core.rootless import RootlessFacts
from dockyard.core.service import ServiceInfo, ServiceState
from dockyard.runtime.cgroups import Cgroups
from dockyard.runtime.containers import ContainerManager
from dockyard.runtime.images.credentials import CredentialStore
from dockyard.runtime.images.store import ImageStore
from dockyard.runtime.monitor import Monitor
from dockyard.runtime.network import Slirp
from dockyard.runtime.network_servicer import NetworksServicer  # networks
from dockyard.runtime.networks import NetworkManager  # networks
from dockyard.runtime.seccomp import load_seccomp
from dockyard.runtime.servicer import ContainersServicer, ImagesServicer
from dockyard.runtime.snapshot import snapshotter_for
from dockyard.runtime.transfer import Transfers
from dockyard.runtime.volume_servicer import VolumesServicer
from dockyard.runtime.volumes import VolumeStore

log = structlog.get_logger(__name__)


class Recovery:
    """Adopt the containers a previous service left (start), stop watching them (stop)."""

    def __init__(self, manager: ContainerManager) -> None:
        self.manager = manager

    async def start(self) -> None:
        await self.manager.recover()

    async def stop(self) -> None:
        await self.manager.close()


def build(host_config: HostConfig, facts: RootlessFacts, platform_auth: Path | None = None) -> ServiceHost:
    """Wire the runtime. Must run inside the event loop (gRPC aio objects bind to it).

    ``platform_auth``: the platform's own registry logins, consulted after the node's ``auth.json``.
    """
    root = host_config.state_dir
    started = ServiceInfo("runtime", ServiceState.SERVING, node=host_config.node)
    host = ServiceHost(host_config, lambda: info())
    store = ImageStore(root / "images", host.publisher, host_config.source)
    snapshots = snapshotter_for(facts.snapshotter, root / "snapshots")
    monitor = Monitor(root / "runc", runtime=str(facts.oci_runtime) if facts.ok else "runc")

    def seccomp(caps: frozenset[str]) -> dict[str, Any] | None:
        """The profile for a container with ``caps`` (load_seccomp caches one per set)."""
        return load_seccomp(caps=caps, arch=platform.machine())

    # Resource limits: which cgroup subtree we may write, decided once (dockyard.core.cgroups); by the
    # real user's name, since in the node namespace our uid is 0.
    cgroups = Cgroups(cgroup_delegation.probe(user=facts.user))
    log.info("cgroups", decision=cgroups.delegation.summary())
    volumes = VolumeStore(root / "volumes", host.publisher, host_config.source)
    # User networks: bridges in the node network namespace (dockyard.runtime.networks, .netns).
    networks = NetworkManager(root / "networks", host.publisher, host_config.source)
    manager = ContainerManager(
        root / "containers",
        store,
        snapshots,
        monitor,
        Slirp(),
        host.publisher,
        host_config.source,
        seccomp,
        cgroups=cgroups,
        volumes=volumes,
        networks=networks,
    )
    platform_logins = CredentialStore(platform_auth) if platform_auth is not None else None
    transfers = Transfers(
        store,
        CredentialStore(root / "auth.json"),
        host.publisher,
        host_config.source,
        platform=platform_logins,
    )

    def info() -> ServiceInfo:
        running = sum(1 for r in manager.list_containers())
        return replace(
            started,
            details={
                "grpc": host_config.grpc_listen,
                "snapshotter": str(facts.snapshotter),
                "oci_runtime": str(facts.oci_runtime),
                "containers_running": str(running),
                "images": str(len(store.list())),
                "events_pending": str(len(host.outbox)),
                "events_dead_letter": str(host.outbox.dead_count()),
                "resource_limits": ", ".join(cgroups.delegation.enforceable) or "none",
                "default_pids_limit": str(cgroups.default_pids_limit)
                if cgroups.default_pids_limit
                else "none (no delegated pids cgroup: a fork bomb can use up the platform user's processes)",
            },
        )

    host.server.add_servicer(
        images_pb2_grpc.add_ImagesServicer_to_server,
        ImagesServicer(store, manager, transfers),
        images_pb2.DESCRIPTOR.services_by_name["Images"].full_name,
    )
    host.server.add_servicer(
        containers_pb2_grpc.add_ContainersServicer_to_server,
        ContainersServicer(manager, host_config.node),
        containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name,
    )
    host.server.add_servicer(
        volumes_pb2_grpc.add_VolumesServicer_to_server,
        VolumesServicer(volumes, host_config.node),
        volumes_pb2.DESCRIPTOR.services_by_name["Volumes"].full_name,
    )
    # --- networks ---
    host.server.add_servicer(
        networks_pb2_grpc.add_NetworksServicer_to_server,
        NetworksServicer(networks, host_config.node),
        networks_pb2.DESCRIPTOR.services_by_name["Networks"].full_name,
    )
    host.add_component(networks)  # re-makes the node network namespace if it is gone
    # --- end networks ---
    host.add_component(Recovery(manager))
    return host
