"""A container's records: what the user asked for (``ContainerConfig``), what the runtime keeps on
disk (``ContainerRecord``, container.json) and its in-memory companion (``LiveContainer``).

A leaf: the lifecycle (``containers``) and the policies around it (``health``, ``restart``,
``stats``) all read these, and this module imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dockyard.runtime import runflags
from dockyard.runtime.cgroups import Limits
from dockyard.runtime.mounts import MountSpec, parse_mount
from dockyard.runtime.network import PortForward


class State(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """What the user asked for (docker run's flags), as persisted. Transport-free."""

    image: str
    name: str = ""
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    tty: bool = False
    interactive: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    mounts: list[MountSpec] = field(default_factory=list)  # binds, volumes, tmpfs (dockyard.runtime.mounts)
    ports: list[runflags.PortMapping] = field(default_factory=list)  # as the client sent them
    publish_all: bool = False
    network: str = "slirp4netns"
    read_only: bool = False
    auto_remove: bool = False
    hostname: str = ""
    tmpfs: list[str] = field(default_factory=list)  # --tmpfs PATH[:OPTS], as docker keeps HostConfig.Tmpfs
    # health checks and restart policies (dockyard.runtime.health, dockyard.runtime.restart)
    restart_policy: str = ""  # "no", "always", "unless-stopped", "on-failure[:N]"
    healthcheck: dict[str, Any] = field(default_factory=dict)  # docker's Healthcheck, merged with the image's
    stop_signal: str = ""
    stop_timeout: int = 0
    volumes_from: list[str] = field(default_factory=list)  # --volumes-from (dockyard.runtime.volumes)
    limits: Limits = field(default_factory=Limits)  # resource limits (dockyard.runtime.cgroups)
    # networks (dockyard.runtime.networks): --dns, --add-host, --network-alias, --ip
    dns: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    network_aliases: list[str] = field(default_factory=list)
    ip: str = ""
    log_opts: dict[str, str] = field(default_factory=dict)  # --log-opt (dockyard.runtime.logs)
    # privileges and init (dockyard.runtime.privileges)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    init: bool = False
    platform: str = ""  # --platform os/arch[/variant], checked against the image at create


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One container, as stored in container.json."""

    id: str
    name: str
    config: ContainerConfig
    image_id: str
    created: str
    state: State = State.CREATED
    exit_code: int = 0
    pid: int = 0
    started: str = ""
    finished: str = ""
    ports: list[PortForward] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    error: str = ""
    oom_killed: bool = False
    # health checks and restart policies (dockyard.runtime.health, dockyard.runtime.restart)
    restart_count: int = 0  # restarts by the policy since the user last started it
    restarting: bool = False  # exited, and the policy starts it again after a back-off
    manual_stop: bool = False  # stopped by the user: no restarts until the next start
    health: dict[str, Any] = field(default_factory=dict)  # docker's State.Health; {} without a check

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ContainerRecord:
        d = json.loads(text)
        d["config"]["limits"] = Limits.from_dict(d["config"].get("limits"))  # resource limits
        # a record written before ports were kept structured holds them as "-p" strings
        d["config"]["ports"] = [
            runflags.parse_publish(p) if isinstance(p, str) else runflags.PortMapping(**p)
            for p in d["config"].get("ports", [])
        ]
        # and mounts as "-v" strings, under "binds"
        d["config"]["mounts"] = [
            parse_mount(m) if isinstance(m, str) else MountSpec.from_dict(m)
            for m in d["config"].pop("binds", None) or d["config"].get("mounts", [])
        ]
        d["config"] = ContainerConfig(**d["config"])
        d["state"] = State(d["state"])
        d["ports"] = [PortForward(**p) for p in d.get("ports", [])]
        return cls(**d)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class LiveContainer:
    """In-memory companion of a record: its lock, exit notification, exit watcher."""

    def __init__(self, record: ContainerRecord) -> None:
        self.record = record
        self.lock = asyncio.Lock()
        self.exited = asyncio.Event()
        if record.state not in (State.RUNNING, State.PAUSED):
            self.exited.set()
        self.started = asyncio.Event()  # it has run once: a next-exit wait may begin
        if record.state is not State.CREATED:
            self.started.set()
        self.watcher: asyncio.Task[None] | None = None


def pid_namespace_members(init_pid: int) -> list[str]:
    """Pids of every process in ``init_pid``'s pid namespace (``runc ps`` would need a cgroup)."""
    try:
        ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    members.append(entry)
    return members
