"""Admission: every check a container's config must pass at create, in one place and before
anything is made — sizes first, then the image, health and restart, the OCI process, cgroup
limits this node can enforce, log options, ports and networks. One clear line for the first that
fails; nothing on disk when any does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from dockyard.core import bounds
from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.core.oci.platform import Platform, parse_platform
from dockyard.runtime import ocispec, privileges, runflags
from dockyard.runtime.cgroups import Cgroups
from dockyard.runtime.health import with_image_healthcheck
from dockyard.runtime.logs import LogOptions
from dockyard.runtime.mounts import Kind
from dockyard.runtime.network import PortForward, free_port
from dockyard.runtime.networks import NetworkManager, NoNetworks, is_user_network
from dockyard.runtime.records import ContainerConfig
from dockyard.runtime.restart import validate as validate_restart_policy


@dataclass(frozen=True, slots=True)
class Admitted:
    """A config that passed, completed with what the checks resolved."""

    config: ContainerConfig  # with the image's healthcheck merged in
    image: Any  # the image record
    image_config: dict[str, Any]  # the image's OCI config "config" object
    process: ocispec.ProcessSpec
    ports: list[PortForward]


async def admit(
    config: ContainerConfig, images: Any, cgroups: Cgroups, networks: NetworkManager | NoNetworks
) -> Admitted:
    """Check ``config`` for a create; the first failure raises (InvalidArgument, NotFound…)."""
    if config.name:  # sizes first (dockyard.core.bounds): nothing past them is looked at
        bounds.check_container_name(config.name)
    bounds.check_exec(config.command or [], config.entrypoint or [], config.env)
    bounds.check_labels(config.labels)
    image = await asyncio.to_thread(images.resolve, config.image)
    doc = await asyncio.to_thread(images.config, image)
    if config.platform:
        check_platform(config.platform, config.image, Platform.of_config(doc))
    image_config = doc.get("config") or {}
    config = validate_restart_policy(with_image_healthcheck(config, image_config))  # health, restart
    run = run_config(config)  # validates the network mode, binds, tmpfs and capabilities
    if config.init:
        privileges.init_binary()  # refused now, not at every start, on a node without one
    cgroups.check(config.limits)  # a limit this node cannot enforce is refused, never dropped
    LogOptions.parse(config.log_opts)  # --log-opt (dockyard.runtime.logs)
    process = ocispec.merge_process(image_config, run)  # validates command, user, signal
    ports = published_ports(config, image_config)
    networks.validate(config)  # the user network exists; --ip, --network-alias, --dns, --add-host
    return Admitted(config, image, image_config, process, ports)


def check_platform(wanted: str, image: str, has: Platform) -> None:
    """``--platform``: the image must be of it; this node runs no emulation."""
    try:
        platform = parse_platform(wanted)
    except ValueError as exc:
        raise InvalidArgument(f"invalid --platform {exc}") from None
    if not platform.admits(has):
        raise FailedPrecondition(
            f"image {image} is {has}, not the requested {platform} (this node runs no emulation)"
        )


def run_config(config: ContainerConfig) -> ocispec.RunConfig:
    """The OCI side of what the user asked for; validates the network mode, binds and tmpfs."""
    return ocispec.RunConfig(
        command=config.command,
        entrypoint=config.entrypoint,
        env=list(config.env),
        workdir=config.workdir,
        user=config.user,
        tty=config.tty,
        interactive=config.interactive,
        hostname=config.hostname,
        read_only=config.read_only,
        tmpfs=[*config.tmpfs, *(m.tmpfs() for m in config.mounts if m.kind == Kind.TMPFS)],
        # volumes are bound at start (VolumeStore.mounts), once made
        binds=[
            runflags.bind_mount(m.source, m.target, m.read_only) for m in config.mounts if m.kind == Kind.BIND
        ],
        # user networks: a network namespace of its own, wired by dockyard.runtime.networks
        network="none" if is_user_network(config.network) else config.network,
        labels=dict(config.labels),
        stop_signal=config.stop_signal,
        cap_add=config.cap_add,
        cap_drop=config.cap_drop,
        privileged=config.privileged,
        init=config.init,
    )


def published_ports(config: ContainerConfig, image_config: dict[str, Any]) -> list[PortForward]:
    """The ports to forward (``-p``, and ``-P``'s image EXPOSEs), host ports chosen where 0."""
    if config.network in ("none", "host"):  # user networks publish through runtime.portfwd
        if config.ports:
            raise InvalidArgument(f"cannot publish ports with --network {config.network}")
        return []
    out: list[PortForward] = []
    for p in config.ports:
        if p.protocol not in ("tcp", "udp"):
            raise InvalidArgument(
                f"cannot publish {p.container_port}/{p.protocol}: only tcp and udp ports can be published"
            )
        host_port = p.host_port or free_port(p.host_ip, p.protocol)
        out.append(PortForward(p.host_ip or "0.0.0.0", host_port, p.container_port, p.protocol))
    if config.publish_all:
        published = {(p.container_port, p.protocol) for p in out}
        for exposed in sorted(image_config.get("ExposedPorts") or {}):
            port, _, proto = exposed.partition("/")
            if not port.isdigit() or (int(port), proto or "tcp") in published:
                continue
            out.append(PortForward("0.0.0.0", free_port("", proto or "tcp"), int(port), proto or "tcp"))
    return out
