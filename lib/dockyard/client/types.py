"""What the client library takes and gives: plain dataclasses, never argparse or protobuf.

Each result type has a ``from_pb`` that reads the wire message once; options have ``to_pb``.
Times are timezone-aware datetimes (None when the platform has none yet).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dockyard.client.grammar import Mount, Port, Volume, parse_mount, parse_publish, parse_volume

PullPolicy = Literal["missing", "always", "never"]

_STATES = {0: "unknown", 1: "created", 2: "running", 3: "paused", 4: "exited", 5: "dead"}


def _time(ts: Any) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """docker's ``--health-*`` flags (the API's ``Healthcheck``): what is unset is the image's.
    ``test`` is ``("CMD", arg, …)``, ``("CMD-SHELL", command)`` or ``("NONE",)`` to disable."""

    test: tuple[str, ...] = ()
    interval_s: float = 0
    timeout_s: float = 0
    start_period_s: float = 0
    retries: int = 0

    def to_pb(self, check: Any) -> None:
        """Fill the wire HealthConfig ``check``."""
        check.SetInParent()
        check.test.extend(self.test)
        for name in ("interval", "timeout", "start_period"):
            seconds = getattr(self, f"{name}_s")
            if seconds:
                getattr(check, name).FromNanoseconds(int(seconds * 1e9))
        check.retries = self.retries

    @classmethod
    def from_pb(cls, check: Any) -> HealthCheck:
        return cls(
            test=tuple(check.test),
            interval_s=check.interval.ToNanoseconds() / 1e9,
            timeout_s=check.timeout.ToNanoseconds() / 1e9,
            start_period_s=check.start_period.ToNanoseconds() / 1e9,
            retries=check.retries,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits (``--memory``, ``--memory-swap``, ``--cpus`` as 1e-9 CPUs, ``--cpu-shares``,
    ``--pids-limit``) at create, or the ones to change (``docker update``): None leaves one as it
    is (the platform's default at create); ``memory_swap`` and ``pids_limit`` -1 lift them."""

    memory: int | None = None
    memory_swap: int | None = None
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None

    def to_pb(self, resources: Any) -> None:
        """Fill the wire Resources ``resources``."""
        resources.SetInParent()
        for name in ("memory", "memory_swap", "nano_cpus", "cpu_shares", "pids_limit"):
            value = getattr(self, name)
            if value is not None:
                setattr(resources, name, value)

    @classmethod
    def from_pb(cls, resources: Any) -> Limits:
        names = ("memory", "memory_swap", "nano_cpus", "cpu_shares", "pids_limit")
        return cls(**{n: getattr(resources, n) if resources.HasField(n) else None for n in names})


@dataclass(frozen=True, slots=True)
class RunOptions:
    """A container to create (``docker run``'s common flags). ``ports``, ``volumes`` and ``mounts``
    take typed values or docker's strings (``"8080:80"``, ``"data:/data:ro"``,
    ``"type=tmpfs,target=/run"``), parsed once by :mod:`dockyard.client.grammar`. ``pull`` is
    docker's ``--pull``: a missing image is pulled when its name says which registry holds it."""

    image: str
    command: Sequence[str] = ()
    name: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Sequence[Port | str] = ()
    volumes: Sequence[Volume | str] = ()
    mounts: Sequence[Mount | str] = ()
    entrypoint: Sequence[str] | None = None
    workdir: str = ""
    user: str = ""
    network: str = ""
    hostname: str = ""
    tty: bool = False
    read_only: bool = False
    auto_remove: bool = False
    pull: PullPolicy = "missing"
    interactive: bool = False  # keep stdin open (docker's -i, the API's OpenStdin)
    publish_all: bool = False  # -P: every exposed port on a free host port
    restart_policy: str = ""  # no, always, unless-stopped, on-failure[:N]
    stop_signal: str = ""
    stop_timeout: int | None = None
    dns: Sequence[str] = ()
    extra_hosts: Sequence[str] = ()  # host:ip
    network_aliases: Sequence[str] = ()
    healthcheck: HealthCheck | None = None
    limits: Limits | None = None
    tmpfs: Sequence[str] = ()  # "/run" or "/run:size=64m"
    cap_add: Sequence[str] = ()  # "NET_ADMIN", "ALL"
    cap_drop: Sequence[str] = ()
    privileged: bool = False  # rootless: every capability of the user's namespace, no filter
    init: bool = False  # catatonit as PID 1
    platform: str = ""  # "linux/amd64": pulled for it, and refused when the image is another's
    log_opts: Mapping[str, str] = field(default_factory=dict)  # --log-opt max-size=…, max-file=…

    def to_pb(self) -> Any:
        """The ContainerSpec this stands for (InvalidArgument for a bad port, volume or mount)."""
        from dockyard.api.containers.v1 import containers_pb2 as pb

        spec = pb.ContainerSpec(
            image=self.image,
            name=self.name,
            command=list(self.command),
            env=[f"{k}={v}" for k, v in self.env.items()],
            labels=dict(self.labels),
            workdir=self.workdir,
            user=self.user,
            network=self.network,
            hostname=self.hostname,
            tty=self.tty,
            read_only=self.read_only,
            auto_remove=self.auto_remove,
            interactive=self.interactive,
            publish_all=self.publish_all,
            restart_policy=self.restart_policy,
            stop_signal=self.stop_signal,
            dns=list(self.dns),
            extra_hosts=list(self.extra_hosts),
            network_aliases=list(self.network_aliases),
            cap_add=list(self.cap_add),
            cap_drop=list(self.cap_drop),
            privileged=self.privileged,
            init=self.init,
            platform=self.platform,
            log_opts=dict(self.log_opts),
        )
        if self.stop_timeout is not None:
            spec.stop_timeout = self.stop_timeout
        if self.healthcheck is not None:
            self.healthcheck.to_pb(spec.healthcheck)
        if self.limits is not None:
            self.limits.to_pb(spec.resources)
        spec.tmpfs.extend(self.tmpfs)
        if self.entrypoint is not None:
            spec.entrypoint.extend(self.entrypoint)
        for port in self.ports:
            for one in parse_publish(port) if isinstance(port, str) else [port]:
                add_to_spec(spec, one)
        for volume in self.volumes:
            add_to_spec(spec, parse_volume(volume) if isinstance(volume, str) else volume)
        for mount in self.mounts:
            add_to_spec(spec, parse_mount(mount) if isinstance(mount, str) else mount)
        return spec


def add_to_spec(spec: Any, item: Port | Volume | Mount) -> None:
    """One parsed ``-p``, ``-v`` or ``--mount`` value into the wire ContainerSpec ``spec``."""
    if isinstance(item, Port):
        spec.ports.add(
            host_ip=item.host_ip,
            host_port=item.host_port,
            container_port=item.container_port,
            protocol=item.protocol,
        )
    elif isinstance(item, Volume):
        spec.mounts.add(
            source=item.source,
            target=item.target,
            read_only=item.read_only,
            type=item.type,
            no_copy=item.no_copy,
        )
    else:
        spec.mounts.add(
            type=item.type,
            source=item.source,
            target=item.target,
            read_only=item.read_only,
            no_copy=item.no_copy,
            tmpfs_size=item.tmpfs_size,
            tmpfs_mode=item.tmpfs_mode,
        )


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    image_id: str
    state: str  # created, running, paused, exited, dead
    exit_code: int
    pid: int
    command: tuple[str, ...]
    ports: tuple[Port, ...]
    labels: Mapping[str, str]
    created: datetime | None
    started: datetime | None
    finished: datetime | None
    error: str = ""
    oom_killed: bool = False
    mounts: tuple[Mount, ...] = ()  # as made: anonymous volumes named, binds normalised
    # how it was made (docker inspect's Config and HostConfig)
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    network: str = ""  # as asked for: "" (the default), none, host, or a user network
    restart_policy: str = ""
    # what it is now
    networks: tuple[NetworkEndpoint, ...] = ()
    ip_address: str = ""
    restart_count: int = 0
    restarting: bool = False
    health: str = ""  # starting, healthy, unhealthy; "" without a health check
    node: str = ""
    # how it was made, continued (docker inspect's HostConfig: limits, tmpfs, privileges …)
    limits: Limits | None = None
    tmpfs: tuple[str, ...] = ()  # "/run" or "/run:size=64m"
    stop_signal: str = ""
    stop_timeout: int = 0  # 0: the default
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    init: bool = False
    read_only: bool = False
    dns: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    healthcheck: HealthCheck | None = None  # as asked for at create; None: the image's
    log_opts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, c: Any) -> ContainerInfo:
        return cls(
            id=c.id,
            name=c.name,
            image=c.image,
            image_id=c.image_id,
            state=_STATES.get(c.state, "unknown"),
            exit_code=c.exit_code,
            pid=c.pid,
            command=tuple(c.command),
            ports=tuple(Port(p.host_ip, p.host_port, p.container_port, p.protocol) for p in c.ports),
            labels=dict(c.spec.labels),
            created=_time(c.created),
            started=_time(c.started),
            finished=_time(c.finished),
            error=c.error,
            oom_killed=c.oom_killed,
            mounts=tuple(
                Mount(m.type, m.source, m.target, m.read_only, m.no_copy, m.tmpfs_size, m.tmpfs_mode)
                for m in c.spec.mounts
            ),
            env=tuple(c.spec.env),
            entrypoint=tuple(c.spec.entrypoint),
            workdir=c.spec.workdir,
            user=c.spec.user,
            hostname=c.spec.hostname,
            tty=c.spec.tty,
            interactive=c.spec.interactive,
            auto_remove=c.spec.auto_remove,
            network=c.spec.network,
            restart_policy=c.spec.restart_policy,
            networks=tuple(
                NetworkEndpoint(n.network, n.network_id, n.ip, n.prefix_len, n.gateway, tuple(n.aliases))
                for n in c.networks
            ),
            ip_address=c.ip_address,
            restart_count=c.restart_count,
            restarting=c.restarting,
            health=c.health.status if c.HasField("health") else "",
            node=c.node,
            limits=Limits.from_pb(c.spec.resources) if c.spec.HasField("resources") else None,
            tmpfs=tuple(c.spec.tmpfs),
            stop_signal=c.spec.stop_signal,
            stop_timeout=c.spec.stop_timeout,
            cap_add=tuple(c.spec.cap_add),
            cap_drop=tuple(c.spec.cap_drop),
            privileged=c.spec.privileged,
            init=c.spec.init,
            read_only=c.spec.read_only,
            dns=tuple(c.spec.dns),
            extra_hosts=tuple(c.spec.extra_hosts),
            healthcheck=HealthCheck.from_pb(c.spec.healthcheck) if c.spec.HasField("healthcheck") else None,
            log_opts=dict(c.spec.log_opts),
        )


@dataclass(frozen=True, slots=True)
class NetworkEndpoint:
    """A container's place on one user network."""

    network: str
    network_id: str
    ip: str
    prefix_len: int
    gateway: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunResult:
    """What ``containers.run`` ended with: the exit code (None when detached) and, when no writer
    was given for it, the output collected."""

    id: str
    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass(frozen=True, slots=True)
class AttachOutput:
    """One message of a live attach: output (``stdout``/``stderr`` with ``data``), ``started``
    (the attach started the container), or ``exit`` (the last one, with ``exit_code``)."""

    kind: Literal["stdout", "stderr", "started", "exit"]
    data: bytes = b""
    exit_code: int = 0

    @classmethod
    def from_pb(cls, m: Any) -> AttachOutput:
        kind = m.WhichOneof("output")
        if kind == "exit_code":
            return cls("exit", exit_code=m.exit_code)
        if kind == "started":
            return cls("started")
        return cls("stderr", m.stderr) if kind == "stderr" else cls("stdout", m.stdout)


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: Literal["stdout", "stderr"]
    data: bytes
    time: datetime | None

    @classmethod
    def from_pb(cls, e: Any) -> LogLine:
        return cls("stderr" if e.stream == 2 else "stdout", e.data, _time(e.time))


@dataclass(frozen=True, slots=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    size: int
    created: datetime | None
    labels: Mapping[str, str]
    config: Mapping[str, Any]  # the image's OCI config document

    @classmethod
    def from_pb(cls, i: Any) -> ImageInfo:
        return cls(
            id=i.id,
            tags=tuple(i.repo_tags),
            digests=tuple(i.repo_digests),
            size=i.size,
            created=_time(i.created),
            labels=dict(i.labels),
            config=json.loads(i.config) if i.config else {},
        )


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One step of a pull: ``id`` is what moves (a layer digest), ``current``/``total`` bytes."""

    id: str
    status: str
    current: int
    total: int

    @classmethod
    def from_pb(cls, p: Any) -> PullProgress:
        return cls(p.id, p.status, p.current, p.total)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """``docker build``'s common flags; ``dockerfile`` is relative to ``context`` unless absolute."""

    context: Path | str
    tags: Sequence[str] = ()
    dockerfile: str = "Dockerfile"
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False

    def to_pb(self, dockerfile: str, content: bytes) -> Any:
        """The wire BuildOptions, with the Dockerfile ``content`` sent under the name ``dockerfile``."""
        from dockyard.api.builds.v1 import builds_pb2 as pb

        return pb.BuildOptions(
            dockerfile=dockerfile,
            dockerfile_content=content,
            tags=list(self.tags),
            build_args=dict(self.build_args),
            labels=dict(self.labels),
            target=self.target,
            no_cache=self.no_cache,
            pull=self.pull,
        )


@dataclass(frozen=True, slots=True)
class BuildProgress:
    """One progress message of a build: a step's status, a line of its output, or the end."""

    step: str
    status: str
    log: bytes
    image_id: str
    error: str
    index: int = 0  # the step's place in the whole build (1-based), of ``total``
    total: int = 0

    @classmethod
    def from_pb(cls, e: Any) -> BuildProgress:
        return cls(e.step, e.status, e.log, e.image_id, e.error, e.index, e.total)


@dataclass(frozen=True, slots=True)
class Event:
    """A platform event (a CloudEvent): ``type`` is e.g. ``io.dockyard.container.started``."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime | None
    data: Mapping[str, Any]
    sequence: int
    labels: Mapping[str, str] = field(default_factory=dict)  # filterable (``label=k=v``)

    @classmethod
    def from_pb(cls, e: Any) -> Event:
        data = json.loads(e.data_json) if e.data_json else {}
        return cls(e.id, e.type, e.source, e.subject, _time(e.time), data, e.sequence, dict(e.labels))


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    id: str
    name: str
    driver: str
    subnet: str
    gateway: str
    labels: Mapping[str, str]
    builtin: bool  # bridge (slirp4netns per container), host, none: the platform's modes
    created: datetime | None = None
    members: tuple[NetworkMember, ...] = ()  # the containers on it

    @classmethod
    def from_pb(cls, n: Any) -> NetworkInfo:
        members = tuple(
            NetworkMember(
                e.container_id, e.container_name, e.ip, e.prefix_len, tuple(e.aliases), e.interface, e.running
            )
            for e in n.containers
        )
        return cls(
            n.id, n.name, n.driver, n.subnet, n.gateway, dict(n.labels), n.builtin, _time(n.created), members
        )


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    name: str
    driver: str
    mountpoint: str
    labels: Mapping[str, str]
    anonymous: bool
    used_by: tuple[str, ...]  # names of the containers (in any state) that mount it
    created: datetime | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, v: Any) -> VolumeInfo:
        return cls(
            v.name,
            v.driver,
            v.mountpoint,
            dict(v.labels),
            v.anonymous,
            tuple(v.used_by),
            _time(v.created),
            dict(v.options),
        )


@dataclass(frozen=True, slots=True)
class NetworkMember:
    """A container on a user network, as the network sees it."""

    container_id: str
    container_name: str
    ip: str
    prefix_len: int
    aliases: tuple[str, ...]
    interface: str  # inside the container: eth0, eth1…
    running: bool


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune removed (names or ids) and the bytes it gave back (0 when not measured)."""

    deleted: tuple[str, ...]
    space_reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class ImageUsage:
    image: ImageInfo
    shared_size: int  # bytes shared with other images
    unique_size: int  # bytes only this image holds
    containers: int  # how many containers were made from it


@dataclass(frozen=True, slots=True)
class VolumeUsage:
    name: str
    size: int  # bytes on disk under the volume
    containers: int  # how many containers mount it
    build_cache: bool  # a RUN --mount=type=cache volume, the builder's


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """``system df``: the node's images, containers' writable layers and volumes."""

    images: tuple[ImageUsage, ...]
    images_size: int  # unique bytes of all images: a layer shared by several counts once
    containers: int
    containers_size: int  # bytes in every container's writable layer, together
    volumes: tuple[VolumeUsage, ...]

    @classmethod
    def from_pb(cls, u: Any) -> DiskUsage:
        return cls(
            images=tuple(
                ImageUsage(ImageInfo.from_pb(i.image), i.shared_size, i.unique_size, i.containers)
                for i in u.images
            ),
            images_size=u.images_size,
            containers=u.containers,
            containers_size=u.containers_size,
            volumes=tuple(VolumeUsage(v.name, v.size, v.containers, v.build_cache) for v in u.volumes),
        )


@dataclass(frozen=True, slots=True)
class PushedImage:
    """What a push put in the registry: the manifest's digest, size in bytes and media type."""

    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class ImageRemoval:
    """What removing an image did: the names it lost, and the images deleted with them."""

    untagged: tuple[str, ...]
    deleted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of an image's history, newest first; ``id`` is "" for a step with no image of its own."""

    id: str
    created: datetime | None
    created_by: str
    size: int
    comment: str
    empty_layer: bool

    @classmethod
    def from_pb(cls, e: Any) -> HistoryEntry:
        return cls(e.id, _time(e.created), e.created_by, e.size, e.comment, e.empty_layer)


@dataclass(frozen=True, slots=True)
class ExecOptions:
    """A process to run in a running container (``docker exec``'s flags). ``env`` adds to the
    container's environment; ``interactive`` keeps stdin open (without it the process reads
    /dev/null); ``rows``/``cols`` size its terminal when ``tty``."""

    container: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    tty: bool = False
    interactive: bool = False
    rows: int = 0
    cols: int = 0

    def to_pb(self) -> Any:
        from dockyard.api.containers.v1 import containers_pb2 as pb

        return pb.ExecStart(
            container_id=self.container,
            command=list(self.command),
            env=[f"{k}={v}" for k, v in self.env.items()],
            tty=self.tty,
            user=self.user,
            workdir=self.workdir,
            interactive=self.interactive,
            rows=self.rows,
            cols=self.cols,
        )


@dataclass(frozen=True, slots=True)
class TopResult:
    """A container's processes as ``ps`` shows them: its column titles and one row per process."""

    titles: tuple[str, ...]
    processes: tuple[tuple[str, ...], ...]

    @classmethod
    def from_pb(cls, t: Any) -> TopResult:
        return cls(tuple(t.titles), tuple(tuple(p.fields) for p in t.processes))


@dataclass(frozen=True, slots=True)
class Change:
    """One path of a container's writable layer that differs from its image: ``kind`` is ``A``
    (added), ``C`` (changed) or ``D`` (deleted). ``raw`` is the path's exact bytes (``path`` shows a
    name that is not UTF-8 with ``\\xNN`` escapes)."""

    kind: Literal["A", "C", "D"]
    path: str
    raw: bytes

    @classmethod
    def from_pb(cls, c: Any) -> Change:
        kind: Any = c.kind
        return cls(kind, c.path, c.path_bytes or c.path.encode())


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """One sample of a container's resource use (``docker stats``); ``cpu_percent`` is of one CPU
    over the last interval (200 = two full cores), memory excludes the inactive page cache, and
    ``memory_limit`` is the node's memory when there is no limit; ``pids_limit`` 0 is none."""

    id: str
    name: str
    state: str
    read: datetime | None
    cpu_percent: float
    cpu_total_ns: int
    memory_usage: int
    memory_limit: int
    memory_percent: float
    net_rx_bytes: int
    net_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    pids: int
    pids_limit: int
    from_cgroup: bool

    @classmethod
    def from_pb(cls, s: Any) -> ContainerStats:
        return cls(
            id=s.id,
            name=s.name,
            state=_STATES.get(s.state, "unknown"),
            read=_time(s.read),
            cpu_percent=s.cpu_percent,
            cpu_total_ns=s.cpu_total_ns,
            memory_usage=s.memory_usage,
            memory_limit=s.memory_limit,
            memory_percent=s.memory_percent,
            net_rx_bytes=s.net_rx_bytes,
            net_tx_bytes=s.net_tx_bytes,
            block_read_bytes=s.block_read_bytes,
            block_write_bytes=s.block_write_bytes,
            pids=s.pids,
            pids_limit=s.pids_limit,
            from_cgroup=s.from_cgroup,
        )
