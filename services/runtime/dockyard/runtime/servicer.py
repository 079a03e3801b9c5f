"""gRPC servicers of the runtime: parse the request, call one core method, convert back.

Core errors become status codes in the ErrorInterceptor; nothing here catches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.api.containers.v1 import containers_pb2_grpc
from dockyard.api.images.v1 import images_pb2 as ipb
from dockyard.api.images.v1 import images_pb2_grpc
from dockyard.api.types.v1 import types_pb2
from dockyard.core import bounds, paging
from dockyard.core.errors import InvalidArgument
from dockyard.runtime import listing
from dockyard.runtime.buildsteps import BuildSteps  # builds
from dockyard.runtime.cgroups import Limits
from dockyard.runtime.containers import ContainerManager
from dockyard.runtime.health_convert import fill_container_pb, healthcheck_from_pb
from dockyard.runtime.images import selection
from dockyard.runtime.images.store import ImageRecord, ImageStore
from dockyard.runtime.network_servicer import add_networks_pb  # networks
from dockyard.runtime.records import ContainerConfig, ContainerRecord, State
from dockyard.runtime.runflags import PortMapping
from dockyard.runtime.stats import ContainerStats, stream_stats
from dockyard.runtime.transfer import Transfers
from dockyard.runtime.volume_servicer import mount_fields, mount_from_pb

CHUNK = 1 << 20

_STATES = {
    State.CREATED: cpb.CONTAINER_STATE_CREATED,
    State.RUNNING: cpb.CONTAINER_STATE_RUNNING,
    State.PAUSED: cpb.CONTAINER_STATE_PAUSED,
    State.EXITED: cpb.CONTAINER_STATE_EXITED,
    State.DEAD: cpb.CONTAINER_STATE_DEAD,
}


def _ts(iso: str) -> Timestamp | None:
    if not iso:
        return None
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(iso))
    return ts


def container_to_pb(r: ContainerRecord, node: str) -> cpb.Container:
    c = r.config
    spec = cpb.ContainerSpec(
        image=c.image,
        name=r.name,
        command=c.command or [],
        entrypoint=c.entrypoint or [],
        env=c.env,
        workdir=c.workdir,
        user=c.user,
        tty=c.tty,
        interactive=c.interactive,
        labels=c.labels,
        mounts=[cpb.Mount(**mount_fields(m)) for m in c.mounts],
        network=c.network,
        read_only=c.read_only,
        auto_remove=c.auto_remove,
        hostname=c.hostname,
        publish_all=c.publish_all,
        tmpfs=c.tmpfs,
        stop_signal=c.stop_signal,
        stop_timeout=c.stop_timeout,
        resources=limits_to_pb(c.limits),
        volumes_from=c.volumes_from,
        log_opts=c.log_opts,
        cap_add=c.cap_add,
        cap_drop=c.cap_drop,
        privileged=c.privileged,
        init=c.init,
        platform=c.platform,
    )
    msg = cpb.Container(
        id=r.id,
        name=r.name,
        image=c.image,
        image_id=r.image_id,
        state=_STATES[r.state],
        exit_code=r.exit_code,
        pid=r.pid,
        spec=spec,
        node=node,
        ports=[
            cpb.PortMapping(
                host_port=p.host_port, container_port=p.container_port, protocol=p.protocol, host_ip=p.host_ip
            )
            for p in r.ports
        ],
        error=r.error,
        command=r.command,
        oom_killed=r.oom_killed,
    )
    for name in ("created", "started", "finished"):
        ts = _ts(getattr(r, name))
        if ts is not None:
            getattr(msg, name).CopyFrom(ts)
    fill_container_pb(r, msg)  # health checks and restart policies (dockyard.runtime.health_convert)
    return msg


def _port_from_pb(p: cpb.PortMapping) -> PortMapping:
    """A published port as the client sent it, checked (no "-p" string in between)."""
    protocol = p.protocol.lower() or "tcp"
    what = f"port {p.host_ip + ':' if p.host_ip else ''}{p.host_port or ''}:{p.container_port}/{protocol}"
    if protocol not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"cannot publish {what}: the protocol must be tcp, udp or sctp")
    if not 0 < p.container_port <= 65535 or p.host_port > 65535:
        raise InvalidArgument(f"cannot publish {what}: ports are 1-65535 (a host port 0 is any free one)")
    if p.host_ip:
        try:
            ipaddress.ip_address(p.host_ip)
        except ValueError:
            raise InvalidArgument(f"cannot publish {what}: {p.host_ip!r} is not an IP address") from None
    return PortMapping(p.container_port, p.host_port, protocol, p.host_ip)


def config_from_pb(spec: cpb.ContainerSpec) -> ContainerConfig:
    if not spec.image:
        raise InvalidArgument("an image is required")
    ports = [_port_from_pb(p) for p in spec.ports]
    network = spec.network or "slirp4netns"
    if network in ("bridge", "default", "slirp"):
        network = "slirp4netns"
    return ContainerConfig(
        image=spec.image,
        name=spec.name,
        command=list(spec.command) or None,
        entrypoint=list(spec.entrypoint) if spec.entrypoint else None,
        env=list(spec.env),
        workdir=spec.workdir,
        user=spec.user,
        tty=spec.tty,
        interactive=spec.interactive,
        labels=dict(spec.labels),
        mounts=[mount_from_pb(m) for m in spec.mounts],  # binds, volumes, tmpfs (volumes)
        ports=ports,
        publish_all=spec.publish_all,
        network=network,
        read_only=spec.read_only,
        auto_remove=spec.auto_remove,
        restart_policy=spec.restart_policy,  # health checks and restart policies
        healthcheck=healthcheck_from_pb(spec),
        hostname=spec.hostname,
        tmpfs=list(spec.tmpfs),
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout,
        limits=Limits.from_dict(limit_changes(spec.resources)),
        volumes_from=list(spec.volumes_from),
        # networks (dockyard.runtime.networks)
        dns=list(spec.dns),
        extra_hosts=list(spec.extra_hosts),
        network_aliases=list(spec.network_aliases),
        ip=spec.ip,
        log_opts=dict(spec.log_opts),
        cap_add=list(spec.cap_add),
        cap_drop=list(spec.cap_drop),
        privileged=spec.privileged,
        init=spec.init,
        platform=spec.platform,
    )


# --- resource limits and stats (dockyard.runtime.cgroups, dockyard.runtime.stats) ---
_LimitField = Literal["memory", "memory_swap", "nano_cpus", "cpu_shares", "pids_limit"]
_LIMIT_FIELDS: tuple[_LimitField, ...] = ("memory", "memory_swap", "nano_cpus", "cpu_shares", "pids_limit")


def limits_to_pb(limits: Limits) -> cpb.Resources:
    """Only the limits that are set (unset fields stay absent)."""
    return cpb.Resources(**{f: getattr(limits, f) for f in _LIMIT_FIELDS if getattr(limits, f)})


def limit_changes(resources: cpb.Resources) -> dict[str, int]:
    """The fields present in ``resources`` (proto3 optional), as Limits field → value. A pids
    limit of 0 given is docker's "unlimited" (-1 here: 0 is "unset", which gets the default)."""
    out: dict[str, int] = {f: getattr(resources, f) for f in _LIMIT_FIELDS if resources.HasField(f)}
    if out.get("pids_limit") == 0:
        out["pids_limit"] = -1
    return out


def stats_to_pb(s: ContainerStats) -> cpb.ContainerStats:
    sample = s.sample
    msg = cpb.ContainerStats(
        id=s.id,
        name=s.name,
        cpu_percent=s.cpu_percent,
        cpu_total_ns=sample.cpu_ns,
        memory_usage=sample.memory_usage,
        memory_limit=sample.memory_limit,
        memory_percent=s.memory_percent,
        net_rx_bytes=sample.net_rx,
        net_tx_bytes=sample.net_tx,
        block_read_bytes=sample.block_read,
        block_write_bytes=sample.block_write,
        pids=sample.pids,
        pids_limit=sample.pids_limit,
        from_cgroup=s.from_cgroup,
        state=_STATES[s.state],
    )
    ts = _ts(s.read)
    if ts is not None:
        msg.read.CopyFrom(ts)
    return msg


# --- end resource limits and stats ---


class ContainersServicer(containers_pb2_grpc.ContainersServicer):
    def __init__(self, manager: ContainerManager, node: str) -> None:
        self.m = manager
        self.node = node

    def _pb(self, record: ContainerRecord) -> cpb.Container:
        msg = container_to_pb(record, self.node)
        # networks: --dns/--add-host/--network-alias/--ip, attachments, the address
        return add_networks_pb(msg, record, self.m.networks, self.m.container_ip(record))

    async def Create(self, request: cpb.CreateContainerRequest, context: Any) -> cpb.Container:
        bounds.check_message_size(request.spec.ByteSize(), "the container spec")  # dockyard.core.bounds
        return self._pb(await self.m.create(config_from_pb(request.spec)))

    async def Start(self, request: cpb.StartContainerRequest, context: Any) -> cpb.Container:
        return self._pb(await self.m.start(request.id))

    async def Stop(self, request: cpb.StopContainerRequest, context: Any) -> cpb.Container:
        timeout = request.timeout_seconds if request.HasField("timeout_seconds") else None
        return self._pb(await self.m.stop(request.id, timeout))

    async def Restart(self, request: cpb.StopContainerRequest, context: Any) -> cpb.Container:
        timeout = request.timeout_seconds if request.HasField("timeout_seconds") else None
        return self._pb(await self.m.restart(request.id, timeout))

    async def Kill(self, request: cpb.KillContainerRequest, context: Any) -> cpb.KillContainerResponse:
        await self.m.kill(request.id, request.signal or None)
        return cpb.KillContainerResponse()

    async def Remove(self, request: cpb.RemoveContainerRequest, context: Any) -> cpb.RemoveContainerResponse:
        await self.m.remove(request.id, request.force, request.volumes)
        return cpb.RemoveContainerResponse()

    async def List(self, request: cpb.ListContainersRequest, context: Any) -> cpb.ListContainersResponse:
        filters = listing.parse(request.filters)  # docker's ps --filter (dockyard.runtime.listing)
        records = self.m.list_containers(request.all or filters.lists_stopped)
        if request.filters:
            records = listing.select(records, filters, self.m.get)
        containers, token = paging.page(  # pages: no answer grows without bound (dockyard.core.paging)
            records,
            lambda r: r.id,
            self._pb,
            lambda m: m.ByteSize(),
            page_size=request.page_size,
            token=request.page_token,
        )
        return cpb.ListContainersResponse(containers=containers, next_page_token=token)

    async def Inspect(self, request: cpb.InspectContainerRequest, context: Any) -> cpb.Container:
        return self._pb(self.m.get(request.id))

    async def Wait(self, request: cpb.WaitContainerRequest, context: Any) -> cpb.WaitContainerResponse:
        return cpb.WaitContainerResponse(exit_code=await self.m.wait(request.id, next_exit=request.next_exit))

    async def Pause(self, request: cpb.PauseContainerRequest, context: Any) -> cpb.Container:
        return self._pb(await self.m.pause(request.id, True))

    async def Unpause(self, request: cpb.PauseContainerRequest, context: Any) -> cpb.Container:
        return self._pb(await self.m.pause(request.id, False))

    async def Rename(self, request: cpb.RenameContainerRequest, context: Any) -> cpb.Container:
        return self._pb(await self.m.rename(request.id, request.name))

    async def Prune(self, request: cpb.PruneContainersRequest, context: Any) -> cpb.PruneContainersResponse:
        deleted, reclaimed = await self.m.prune()
        return cpb.PruneContainersResponse(deleted=deleted, space_reclaimed=reclaimed)

    # --- resource limits and stats ---
    async def Update(self, request: cpb.UpdateContainerRequest, context: Any) -> cpb.Container:
        return self._pb(await self.m.update(request.id, limit_changes(request.resources)))

    async def Stats(self, request: cpb.StatsRequest, context: Any) -> AsyncIterator[cpb.StatsResponse]:
        async for report in stream_stats(self.m, list(request.ids), stream=request.stream):
            yield cpb.StatsResponse(stats=[stats_to_pb(s) for s in report])

    # --- end resource limits and stats ---

    async def Top(self, request: cpb.TopRequest, context: Any) -> cpb.TopResponse:
        titles, rows = await self.m.top(request.id, list(request.ps_args))
        return cpb.TopResponse(titles=titles, processes=[cpb.TopResponse.Process(fields=r) for r in rows])

    async def Diff(self, request: cpb.DiffRequest, context: Any) -> cpb.DiffResponse:
        changes = await self.m.diff(request.id)
        return cpb.DiffResponse(
            changes=[  # a name that is not UTF-8: escaped text, and its exact bytes beside it
                cpb.Change(kind=c.kind, path=c.text, path_bytes=b"" if c.text == c.path else c.raw)
                for c in changes
            ]
        )

    async def Commit(self, request: cpb.CommitRequest, context: Any) -> cpb.CommitResponse:
        image = await self.m.commit(
            request.container_id,
            reference=request.reference,
            message=request.message,
            author=request.author,
            changes=list(request.changes),
        )
        return cpb.CommitResponse(image_id=image.id)

    async def Logs(self, request: cpb.LogsRequest, context: Any) -> AsyncIterator[cpb.LogEntry]:
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        async for stream, data, when in self.m.logs(
            request.id, follow=request.follow, since=since, tail=request.tail, timestamps=request.timestamps
        ):
            entry = cpb.LogEntry(
                stream=cpb.STREAM_STDERR if stream == "stderr" else cpb.STREAM_STDOUT, data=data
            )
            from dockyard.runtime.logs import parse_time

            t = parse_time(when)
            if t is not None:
                entry.time.FromDatetime(t)
            yield entry

    async def Attach(
        self, request_iterator: AsyncIterator[cpb.AttachInput], context: Any
    ) -> AsyncIterator[cpb.AttachOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("start"):
            raise InvalidArgument("the first Attach message must be AttachStart")
        start = first.start
        record, stream = await self.m.attach(start.container_id, start=start.start)
        if start.rows and start.cols:
            self.m.resize(record.id, start.rows, start.cols)

        async def pump_input() -> None:
            async for message in request_iterator:
                kind = message.WhichOneof("input")
                if kind == "stdin" and start.stdin:
                    await stream.write(message.stdin)
                elif kind == "stdin_eof":
                    stream.close_stdin()
                elif kind == "resize":
                    self.m.resize(record.id, message.resize.rows, message.resize.cols)

        feeder = asyncio.create_task(pump_input())
        try:
            if start.start:
                yield cpb.AttachOutput(started=True)
            async for pipe, data in stream.output():
                if pipe == 3:
                    yield cpb.AttachOutput(stderr=data)
                else:
                    yield cpb.AttachOutput(stdout=data)
            if start.wait:
                yield cpb.AttachOutput(exit_code=await self.m.wait(record.id))
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
            stream.close()

    async def Exec(
        self, request_iterator: AsyncIterator[cpb.ExecInput], context: Any
    ) -> AsyncIterator[cpb.ExecOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("start"):
            raise InvalidArgument("the first Exec message must be ExecStart")
        s = first.start
        session = await self.m.exec(
            s.container_id,
            list(s.command),
            env=list(s.env),
            user=s.user,
            workdir=s.workdir,
            tty=s.tty,
            interactive=s.interactive,
            rows=s.rows,
            cols=s.cols,
        )

        async def pump_input() -> None:
            async for message in request_iterator:
                kind = message.WhichOneof("input")
                if kind == "stdin":
                    await session.write(message.stdin)
                elif kind == "stdin_eof":
                    session.close_stdin()
                elif kind == "resize":
                    session.resize(message.resize.rows, message.resize.cols)

        feeder = asyncio.create_task(pump_input())
        try:
            async for name, data in session.output():
                yield cpb.ExecOutput(stderr=data) if name == "stderr" else cpb.ExecOutput(stdout=data)
            yield cpb.ExecOutput(exit_code=await session.wait())
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
            session.kill()

    async def CopyFrom(self, request: cpb.CopyFromRequest, context: Any) -> AsyncIterator[cpb.CopyChunk]:
        from dockyard.runtime import layerdiff

        root, path, root_name = await asyncio.to_thread(
            self.m.copy_root, request.id, request.path, write=False
        )
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()  # the client left: the tar thread must stop, not wait for room

        class _Writer:
            def write(self, data: bytes) -> int:
                if abandoned.is_set():
                    raise BrokenPipeError("the copy was cancelled")
                asyncio.run_coroutine_threadsafe(queue.put(bytes(data)), loop).result()
                return len(data)

            def flush(self) -> None:
                pass

        async def produce() -> None:
            try:
                await asyncio.to_thread(
                    functools.partial(layerdiff.tar_path, root, path, _Writer(), root_name=root_name)
                )
            finally:
                await queue.put(None)

        producer = asyncio.create_task(produce())
        try:
            buf = b""
            while (chunk := await queue.get()) is not None:
                buf += chunk
                if len(buf) >= CHUNK:
                    yield cpb.CopyChunk(data=buf)
                    buf = b""
            if buf:
                yield cpb.CopyChunk(data=buf)
            await producer  # raises the copy's error, if any
        finally:
            if not producer.done():  # cancelled (a HEAD's stat reads only the first header)
                abandoned.set()
                while not queue.empty():  # room for the write the thread may be waiting on
                    queue.get_nowait()
                producer.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def CopyTo(
        self, request_iterator: AsyncIterator[cpb.CopyToInput], context: Any
    ) -> cpb.CopyToResponse:
        from dockyard.runtime import layerdiff

        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("target"):
            raise InvalidArgument("the first CopyTo message must name the container and directory")
        root, path, _ = await asyncio.to_thread(
            self.m.copy_root, first.target.id, first.target.path, write=True
        )
        chunks = _ThreadFeed(request_iterator, lambda m: m.data)
        await chunks.run(layerdiff.untar_into, root, path)
        return cpb.CopyToResponse()


class _ThreadFeed:
    """Hand an async stream of client chunks to blocking code running in a worker thread."""

    def __init__(self, source: AsyncIterator[Any], pick: Any) -> None:
        self._source = source
        self._pick = pick
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

    def _iter(self, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
        while True:
            item = asyncio.run_coroutine_threadsafe(self._queue.get(), loop).result()
            if item is None:
                return
            yield item

    async def run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()

        async def feed() -> None:
            try:
                async for message in self._source:
                    data = self._pick(message)
                    if data:
                        await self._queue.put(data)
            finally:
                await self._queue.put(None)

        feeder = asyncio.create_task(feed())
        try:
            return await asyncio.to_thread(fn, *args, self._iter(loop))  # type: ignore[call-arg]
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder


# --- images -------------------------------------------------------------------------------------------


def image_to_pb(store: ImageStore, record: Any) -> ipb.Image:
    config = store.config(record)
    try:
        return _image_pb(record, config)
    except UnicodeEncodeError:
        # An image recorded before pull refused lone surrogate escapes ("\ud800"): shown with
        # U+FFFD in their place, as Go's decoder (runc) reads them, rather than breaking every
        # listing of the node. rmi removes it as any other.
        text = _SURROGATE.sub("\ufffd", json.dumps(config, ensure_ascii=False))
        return _image_pb(record, json.loads(text))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _image_pb(record: Any, config: dict[str, Any]) -> ipb.Image:
    msg = ipb.Image(
        id=record.id,
        repo_tags=list(record.repo_tags),
        repo_digests=list(record.repo_digests),
        manifest=types_pb2.Descriptor(
            media_type=record.manifest_media_type, digest=record.manifest_digest, size=0
        ),
        platform=types_pb2.Platform(
            os=config.get("os", ""),
            architecture=config.get("architecture", ""),
            variant=config.get("variant", ""),
        ),
        size=record.size,
        labels=(config.get("config") or {}).get("Labels") or {},
        config=json.dumps(config).encode(),
        layers=list(record.diff_ids),
    )
    created = _ts(config.get("created", "") or "")
    if created is not None:
        msg.created.CopyFrom(created)
    return msg


BUILD_CACHE_LABEL = "dockyard.build.cache"  # what the builder labels its cache mounts' volumes with


class ImagesServicer(images_pb2_grpc.ImagesServicer):
    def __init__(self, store: ImageStore, manager: ContainerManager, transfers: Transfers) -> None:
        self.store = store
        self.m = manager
        self.transfers = transfers
        self.steps = BuildSteps(store, manager)  # builds (dockyard.runtime.buildsteps)

    def _pb(self, record: Any) -> ipb.Image:
        return image_to_pb(self.store, record)

    def _select(self, all: bool, filters: list[str]) -> list[ImageRecord]:
        def labels_of(record: Any) -> dict[str, str]:
            return self.store.config(record).get("config", {}).get("Labels") or {}

        def history_of(record: Any) -> list[Any]:
            return self.store.config(record).get("history") or []

        return selection.select(
            self.store.list(),
            show_all=all,
            filters=filters,
            labels_of=labels_of,
            history_of=history_of,
            resolve=self.store.resolve,
        )

    async def List(self, request: ipb.ListImagesRequest, context: Any) -> ipb.ListImagesResponse:
        records = await asyncio.to_thread(self._select, request.all, list(request.filters))
        images, token = paging.page(  # pages, as Containers.List's
            records,
            lambda r: r.id,
            self._pb,
            lambda m: m.ByteSize(),
            page_size=request.page_size,
            token=request.page_token,
        )
        return ipb.ListImagesResponse(images=images, next_page_token=token)

    async def Inspect(self, request: ipb.InspectImageRequest, context: Any) -> ipb.Image:
        return self._pb(await asyncio.to_thread(self.store.resolve, request.reference))

    async def Tag(self, request: ipb.TagRequest, context: Any) -> ipb.TagResponse:
        await asyncio.to_thread(self.store.tag, request.source, request.target)
        return ipb.TagResponse()

    async def Remove(self, request: ipb.RemoveImageRequest, context: Any) -> ipb.RemoveImageResponse:
        untagged, deleted = await asyncio.to_thread(
            self.store.remove, request.reference, request.force, self.m.users_of_image
        )
        return ipb.RemoveImageResponse(untagged=untagged, deleted=deleted)

    async def Prune(self, request: ipb.PruneImagesRequest, context: Any) -> ipb.PruneImagesResponse:
        deleted, reclaimed = await asyncio.to_thread(self.store.prune, request.all, self.m.users_of_image)
        return ipb.PruneImagesResponse(deleted=deleted, space_reclaimed=reclaimed)

    async def History(self, request: ipb.HistoryRequest, context: Any) -> ipb.HistoryResponse:
        rows = await asyncio.to_thread(self.store.history, request.reference)
        out = []
        for row in rows:
            entry = ipb.HistoryEntry(
                id=row.id,
                created_by=row.created_by,
                size=row.size,
                comment=row.comment,
                empty_layer=row.empty_layer,
            )
            ts = _ts(row.created or "")
            if ts is not None:
                entry.created.CopyFrom(ts)
            out.append(entry)
        return ipb.HistoryResponse(entries=out)

    async def Import(self, request_iterator: AsyncIterator[ipb.ImportChunk], context: Any) -> ipb.Image:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument("import: no data")
        reference, changes, message = first.reference or None, list(first.changes), first.message

        async def chunks() -> AsyncIterator[ipb.ImportChunk]:
            yield first
            async for m in request_iterator:
                yield m

        feed = _ThreadFeed(chunks(), lambda m: m.data)
        record = await feed.run(lambda it: self.store.import_rootfs(it, reference, changes, message))
        return self._pb(record)

    async def Save(self, request: ipb.SaveRequest, context: Any) -> AsyncIterator[ipb.SaveChunk]:
        fmt = request.format or "oci"
        if fmt not in ("oci", "oci-archive", "docker-archive"):
            raise InvalidArgument(f"unknown format {fmt!r}: use oci or docker-archive")
        fmt = "oci" if fmt == "oci-archive" else fmt
        refs = list(request.references)
        if not refs:
            raise InvalidArgument("save: name at least one image")
        for ref in refs:  # fail before streaming anything
            await asyncio.to_thread(self.store.resolve, ref)
        from dockyard.runtime.images.archive import save

        it = save(self.store, refs, fmt)
        buf = b""
        while (chunk := await asyncio.to_thread(lambda: next(it, None))) is not None:
            buf += chunk
            if len(buf) >= CHUNK:
                yield ipb.SaveChunk(data=buf)
                buf = b""
        if buf:
            yield ipb.SaveChunk(data=buf)

    async def Load(self, request_iterator: AsyncIterator[ipb.LoadChunk], context: Any) -> ipb.LoadResponse:
        feed = _ThreadFeed(request_iterator, lambda m: m.data)
        from dockyard.runtime.images.archive import load

        records = await feed.run(lambda it: load(self.store, it))
        return ipb.LoadResponse(images=[self._pb(r) for r in records])

    async def Pull(self, request: ipb.PullRequest, context: Any) -> AsyncIterator[ipb.PullProgress]:
        async for progress, record in self.transfers.pull(request.reference, insecure=request.insecure):
            if record is not None:
                yield ipb.PullProgress(image=self._pb(record))
            else:
                yield ipb.PullProgress(progress=progress)

    async def Push(self, request: ipb.PushRequest, context: Any) -> AsyncIterator[ipb.PushProgress]:
        async for progress, descriptor in self.transfers.push(request.reference, insecure=request.insecure):
            if descriptor is not None:
                yield ipb.PushProgress(manifest=descriptor)
            else:
                yield ipb.PushProgress(progress=progress)

    async def Login(self, request: ipb.LoginRequest, context: Any) -> ipb.LoginResponse:
        await self.transfers.login(request.registry, request.username, request.password, request.insecure)
        return ipb.LoginResponse()

    async def Logout(self, request: ipb.LogoutRequest, context: Any) -> ipb.LogoutResponse:
        self.transfers.logout(request.registry)
        return ipb.LogoutResponse()

    # --- registry manifests (the builder's cache in a registry) ---
    async def GetManifest(self, request: ipb.GetManifestRequest, context: Any) -> ipb.RegistryManifest:
        desc, body = await self.transfers.get_manifest(request.reference, insecure=request.insecure)
        return ipb.RegistryManifest(media_type=desc.media_type, content=body, digest=desc.digest)

    async def PutManifest(self, request: ipb.PutManifestRequest, context: Any) -> types_pb2.Descriptor:
        desc = await self.transfers.put_manifest(
            request.reference, request.content, request.media_type, insecure=request.insecure
        )
        return types_pb2.Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)

    # --- end registry manifests ---

    async def DiskUsage(self, request: ipb.DiskUsageRequest, context: Any) -> ipb.DiskUsageResponse:
        rows = await asyncio.to_thread(self.store.disk_usage, self.m.users_of_image)
        hidden = await asyncio.to_thread(  # counted as `images` counts them, without -a
            selection.intermediates,
            [row.image for row in rows],
            lambda r: self.store.config(r).get("history") or [],
        )
        images = [
            ipb.ImageUsage(
                image=self._pb(row.image),
                shared_size=row.shared_size,
                unique_size=row.unique_size,
                containers=row.containers,
            )
            for row in rows
            if row.image.id not in hidden
        ]
        containers = self.m.list_containers(all=True)
        volumes = [
            ipb.VolumeUsage(
                name=record.name,
                size=size,
                containers=len(users),
                build_cache=BUILD_CACHE_LABEL in record.labels,
            )
            for record, users, size in await self.m.volumes.usage()
        ]
        return ipb.DiskUsageResponse(
            images=images,
            images_size=await asyncio.to_thread(self.store.total_size),
            containers=len(containers),
            containers_size=await asyncio.to_thread(self.m.writable_size),
            volumes=volumes,
        )

    # --- builds (the builder's steps: dockyard.runtime.buildsteps) ---

    async def AddLayer(self, request_iterator: AsyncIterator[ipb.AddLayerInput], context: Any) -> ipb.Image:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("step"):
            raise InvalidArgument("the first AddLayer message must be the step")
        step = first.step
        feed = _ThreadFeed(request_iterator, lambda m: m.data)
        record = await feed.run(
            lambda it: self.steps.add_layer(step.parent, it, reference=step.reference or None, **_step(step))
        )
        return self._pb(record)

    async def Configure(self, request: ipb.BuildStep, context: Any) -> ipb.Image:
        ref = request.reference or None
        record = await asyncio.to_thread(
            lambda: self.steps.configure(request.parent, reference=ref, **_step(request))
        )
        return self._pb(record)

    async def CommitStep(self, request: ipb.BuildStep, context: Any) -> ipb.Image:
        clamp = request.clamp_mtime if request.HasField("clamp_mtime") else None
        record = await self.steps.commit_container(
            request.container_id, clamp_mtime=clamp, reference=request.reference or None, **_step(request)
        )
        return self._pb(record)

    async def Squash(self, request: ipb.SquashRequest, context: Any) -> ipb.Image:
        created = None
        if request.HasField("created"):
            created = request.created.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = await asyncio.to_thread(
            lambda: self.steps.squash(
                request.image, request.base, created_by=request.created_by, created=created
            )
        )
        return self._pb(record)

    async def StatPaths(self, request: ipb.StatPathsRequest, context: Any) -> ipb.StatPathsResponse:
        for path in request.paths:
            if not path.startswith("/"):
                raise InvalidArgument(f"path {path[:200]!r} is not absolute")
        found = await asyncio.to_thread(self.steps.stat_paths, request.image, list(request.paths))
        return ipb.StatPathsResponse(
            stats=[
                ipb.PathStat(path=p, resolved=r, mode=st.st_mode, uid=st.st_uid, gid=st.st_gid)
                for p, r, st in found
            ]
        )


def _step(step: ipb.BuildStep) -> dict[str, Any]:
    config = None
    if step.config:
        try:
            config = json.loads(step.config)
        except ValueError as exc:
            raise InvalidArgument(f"step config is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise InvalidArgument("step config must be a JSON object")
    created = None
    if step.HasField("created"):
        created = step.created.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # the metadata steps since the parent: entries without a layer, at the step's time
    when = created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = step.empty_layer_history
    history = [{"created": when, "created_by": line, "empty_layer": True} for line in lines]
    return {
        "config": config,
        "created_by": step.created_by,
        "created": created,
        "comment": step.comment,
        "history": history,
    }


# --- end builds ---
