"""Containers on this node: the lifecycle core, with no gRPC in it.

A container is an image's read-only layers plus its own writable layer (a snapshot) and a
process run by runc under conmon. Its record is the one truth about it, written atomically
after every change, so a restarted service finds every container, running or not::

    <state>/containers/<id>/
      container.json     the record (ContainerRecord): config, state, times, exit code, ports
      bundle/            the OCI bundle and conmon's files (see dockyard.runtime.monitor)
      etc/               hosts, resolv.conf, hostname bind-mounted into the container
      ctr.log  exit  oom slirp.pid slirp.sock
    <state>/snapshots/<id>/{upper,work,merged}    the writable layer (dockyard.runtime.snapshot)

States: created → running ⇄ paused → exited (→ running again on start) ; dead when the
process could not be recovered. Every transition is persisted, then published as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import random
import secrets
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import structlog

from dockyard.core import bounds
from dockyard.core.cgroups import Delegation
from dockyard.core.errors import (
    AlreadyExists,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
)
from dockyard.core.events import Publisher, Subject, new_event
from dockyard.core.fsutil import FULL_ERRNOS, storage_full
from dockyard.runtime import etcfiles, ocispec, passwd, privileges, runflags
from dockyard.runtime.admission import admit, run_config
from dockyard.runtime.cgroups import Cgroups, Limits
from dockyard.runtime.execs import ExecSession
from dockyard.runtime.health import HealthChecks
from dockyard.runtime.logs import LogOptions, follow_log, rotate
from dockyard.runtime.monitor import AttachStream, Monitor, Paths
from dockyard.runtime.mounts import Kind
from dockyard.runtime.network import CONTAINER_IP, Slirp
from dockyard.runtime.networks import NetworkManager, NoNetworks, is_user_network  # user networks
from dockyard.runtime.records import (
    ContainerConfig,
    ContainerRecord,
    LiveContainer,
    State,
    now,
    pid_namespace_members,
)
from dockyard.runtime.reserve import SpaceReserve
from dockyard.runtime.restart import RestartPolicies
from dockyard.runtime.volumes import VolumeStore

log = structlog.get_logger(__name__)

DEFAULT_STOP_TIMEOUT = 10
LOG_ROTATE_EVERY_S = 0.5  # how far past max-size a log can grow: this times the writer's rate
ADOPTED_POLL_S = 0.5


class ImageSource(Protocol):
    """What the container core needs of the image store."""

    def resolve(self, ref: str) -> Any: ...

    def config(self, record: Any) -> dict[str, Any]: ...

    def layer_dirs(self, record: Any) -> list[Path]: ...

    def commit_layer(
        self,
        parent: Any,
        layer_tar: Path,
        changes: list[str],
        message: str,
        author: str,
        created_by: str,
        config_overrides: dict[str, Any] | None,
        reference: str | None,
    ) -> Any: ...


class Snapshots(Protocol):
    def prepare(self, key: str, lowers: Sequence[Path]) -> Path: ...

    def mount(self, key: str, lowers: Sequence[Path]) -> Path: ...

    def unmount(self, key: str) -> None: ...

    def remove(self, key: str) -> None: ...

    def upper(self, key: str) -> Path: ...

    def changes(self, key: str, lowers: Sequence[Path]) -> list[Any]: ...

    def write_layer(self, key: str, lowers: Sequence[Path], out: BinaryIO) -> tuple[str, int]: ...


_ADJECTIVES = (
    "brave calm eager fond gentle happy jolly keen lucid merry noble proud quick sharp tidy vivid wise zen"
)
_NOUNS = (
    "archimedes bohr curie darwin euler fermi gauss hopper joule kepler lovelace mendel newton pascal tesla"
)


def random_name() -> str:
    return f"{random.choice(_ADJECTIVES.split())}_{random.choice(_NOUNS.split())}"


def removal_owed(record: ContainerRecord) -> bool:
    """A ``--rm`` container found not running when the service starts: created and never
    started (its start was cut short by a killed service, or the client went away) or exited with
    its removal unmade. Nothing can run it any more, so it is removed, as docker's daemon does
    with every AutoRemove container that is not running at restore."""
    return record.config.auto_remove and record.state not in (State.RUNNING, State.PAUSED)


class ContainerManager:
    """Create, run, stop and remove containers; the servicer calls one method per RPC."""

    def __init__(
        self,
        root: Path,
        images: ImageSource,
        snapshots: Snapshots,
        monitor: Monitor,
        slirp: Slirp,
        publisher: Publisher,
        source: str,
        seccomp: Callable[[frozenset[str]], dict[str, Any] | None] = lambda caps: None,
        cgroups: Cgroups | None = None,
        volumes: VolumeStore | None = None,
        networks: NetworkManager | None = None,
    ) -> None:
        self.root = root
        self.images = images
        self.snapshots = snapshots
        self.monitor = monitor
        self.slirp = slirp
        self.publisher = publisher
        self.source = source
        self.seccomp = seccomp
        # Resource limits, pause, stats: the delegated cgroup subtree, or none (limits refused).
        self.cgroups = cgroups or Cgroups(Delegation("none", False, problems=("no cgroup was configured",)))
        # Volumes (dockyard.runtime.volumes): made at create, mounted at start, released at remove.
        self.volumes = volumes or VolumeStore(root.parent / "volumes", publisher, source)
        self.volumes.containers = lambda: self.list_containers(all=True)
        # User networks (dockyard.runtime.networks): endpoints made at create, wired at start.
        self.networks: NetworkManager | NoNetworks = networks or NoNetworks()
        if networks is not None:
            networks.bind(self)
        self.live: dict[str, LiveContainer] = {}
        self._names_lock = asyncio.Lock()
        self._claimed: set[str] = set()  # names of containers being created
        self._log_rotation: asyncio.Task[None] | None = None  # started by recover()
        self.health = HealthChecks(self)  # health checks (dockyard.runtime.health)
        self.restarts = RestartPolicies(self)  # restart policies (dockyard.runtime.restart)
        root.mkdir(parents=True, exist_ok=True)
        self.reserve = SpaceReserve(root.parent / "space-reserve")  # so kill/stop/rm work when full
        self.reserve.ensure()

    # --- records -------------------------------------------------------------------------------------

    def _dir(self, cid: str) -> Path:
        return self.root / cid

    def _paths(self, cid: str) -> Paths:
        return Paths(self._dir(cid))

    def save(
        self, record: ContainerRecord, *, durable: bool = False, strict: bool = False
    ) -> ContainerRecord:
        """Persist ``record`` atomically (rename) and make it the live one.

        Only ``durable`` saves (creation) wait for the disk: a later state (running, exited) is
        what conmon's files say anyway, and recover() reconciles with them; no container survives
        the power loss that would lose an unsynced rename. That keeps two fsyncs off every run.

        On a full disk the half-written temporary file is removed and the old record stays whole.
        A ``durable`` or ``strict`` save (create, rename, update) then raises StorageFull; any other
        (a state change on the way to stopping) keeps the record in memory only, so kill, stop and
        rm still work when a container has filled the disk.
        """
        d = self._dir(record.id)
        tmp = d / "container.json.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(record.to_json())
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            tmp.replace(d / "container.json")
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            tmp.unlink(missing_ok=True)
            if durable or strict:
                raise storage_full(exc, tmp) from None
            log.warning("disk full: container record kept in memory only", id=record.id[:12])
        live = self.live.get(record.id)
        if live is not None:
            live.record = record
        return record

    def emit(self, subject: Subject, record: ContainerRecord, **data: Any) -> None:
        payload = {"id": record.id, "name": record.name, "image": record.config.image, **data}
        self.publisher.publish(new_event(subject, self.source, record.id, payload))

    def get(self, ref: str) -> ContainerRecord:
        return self._find(ref).record

    def _find(self, ref: str) -> LiveContainer:
        """By full id, name, or unique id prefix — as docker resolves them."""
        if not ref:
            raise InvalidArgument("a container name or id is required")
        live = self.live.get(ref)
        if live is not None:
            return live
        for candidate in self.live.values():
            if candidate.record.name == ref.lstrip("/"):
                return candidate
        matches = [c for cid, c in self.live.items() if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"ambiguous container id prefix {ref!r}: {len(matches)} containers match")
        raise NotFound(f"no such container: {ref}", reason=Reason.NO_SUCH_CONTAINER)

    def list_containers(self, all: bool = False) -> list[ContainerRecord]:
        records = [c.record for c in self.live.values()]
        if not all:
            records = [r for r in records if r.state in (State.RUNNING, State.PAUSED)]
        return sorted(records, key=lambda r: r.created, reverse=True)

    def writable_size(self) -> int:
        """Bytes in every container's writable layer (docker system df's containers row)."""
        return sum(_du(self.snapshots.upper(cid)) for cid in list(self.live))

    def users_of_image(self, image_id: str) -> list[str]:
        """Names of the containers (in any state) made from ``image_id``."""
        return sorted(c.record.name for c in self.live.values() if c.record.image_id == image_id)

    # --- start-up: adopt what a previous service left ----------------------------------------------

    async def recover(self) -> None:
        """Load every record; reconcile running ones with what conmon recorded meanwhile."""
        for d in sorted(self.root.iterdir()):
            if d.name.startswith("commit-") and d.name.endswith(".tar") and not d.is_dir():
                d.unlink(missing_ok=True)  # a commit's layer, left by a service killed mid-commit
                log.info("removed an interrupted commit's layer", file=d.name)
                continue
            try:
                record = ContainerRecord.from_json((d / "container.json").read_text())
            except (OSError, ValueError, TypeError, KeyError) as exc:
                if d.is_dir() and not (d / "container.json").exists():
                    shutil.rmtree(d, ignore_errors=True)  # a create that died before its record
                else:
                    log.warning("unreadable container record", dir=str(d), error=str(exc))
                continue
            live = LiveContainer(record)
            self.live[record.id] = live
            if record.state in (State.RUNNING, State.PAUSED):
                paths = self._paths(record.id)
                if Monitor.exit_code(paths) is not None or not Monitor.monitor_alive(paths):
                    await self._on_exit(live, Monitor.exit_code(paths))
                else:
                    live.watcher = asyncio.create_task(self._watch_adopted(live))
                    log.info("adopted running container", id=record.short_id, name=record.name)
                    await self._readopt_network(record)
        for live in [c for c in self.live.values() if removal_owed(c.record)]:
            await self._remove_owed(live)
        self.health.recover()  # health checks of adopted containers resume
        self.restarts.recover()  # restarts owed by the previous service are made
        self._log_rotation = asyncio.create_task(self._rotate_logs(), name="log-rotation")

    async def _remove_owed(self, live: LiveContainer) -> None:
        """Remove a ``--rm`` container a killed service left (see :func:`removal_owed`), with the
        ``container.removed`` event it owed. A start cut short may have left runc's container
        (created, or even started) with its conmon, cgroup, mount and helpers: all of it goes."""
        record = live.record
        log.info("removing a --rm container left by the previous service", id=record.short_id,
                 name=record.name, state=record.state.value)  # fmt: skip
        try:
            if record.state is State.CREATED:
                await self.monitor.delete(record.id)  # --force: kills what runc made, then deletes it
                await self.networks.detach(record)
                await asyncio.to_thread(self._release, record.id)
            await self.remove(record.id, force=True)
        except (DockyardError, OSError) as exc:  # the next start tries again; serving goes on
            log.error("cannot remove a --rm container left behind", id=record.short_id, error=str(exc))

    async def _rotate_logs(self) -> None:
        """Keep every running container's log within its --log-opt bounds (dockyard.runtime.logs)."""
        while True:
            await asyncio.sleep(LOG_ROTATE_EVERY_S)
            for live in list(self.live.values()):
                record = live.record
                if record.state not in (State.RUNNING, State.PAUSED):
                    continue
                opts = LogOptions.parse(record.config.log_opts)
                paths = self._paths(record.id)
                try:
                    if not opts.max_size or os.stat(paths.log).st_size < opts.max_size:
                        continue
                    await asyncio.to_thread(rotate, paths.log, paths.ctl, opts.max_file)
                except (OSError, DockyardError) as exc:  # the next round tries again
                    log.warning("log rotation failed", id=record.short_id, error=str(exc))

    async def _readopt_network(self, record: ContainerRecord) -> None:
        """An adopted container's network helpers, started again if they died meanwhile, so a port
        shown is a port served (its namespaces are intact: they belong to the container)."""
        try:
            if record.config.network == "slirp4netns" and not Slirp.running(self._dir(record.id)):
                log.warning("slirp4netns of an adopted container is gone; starting it", id=record.short_id)
                await self.slirp.attach(record.pid, self._dir(record.id), record.ports)
            await self.networks.readopt(record)
        except DockyardError as exc:
            log.error("cannot restore an adopted container's network", id=record.short_id, error=str(exc))
            self.save(replace(record, error=f"its network could not be restored: {exc}"))

    async def _watch_adopted(self, live: LiveContainer) -> None:
        paths = self._paths(live.record.id)
        # conmon is not our child and its sync pipe died with the previous service: poll its files.
        while Monitor.exit_code(paths) is None and Monitor.monitor_alive(paths):  # noqa: ASYNC110
            await asyncio.sleep(ADOPTED_POLL_S)
        await self._on_exit(live, Monitor.exit_code(paths))

    async def close(self) -> None:
        """Stop watching (containers keep running; the next service adopts them)."""
        await self.health.close()  # health checks and restart policies: the next service resumes them
        await self.restarts.close()
        tasks = [c.watcher for c in self.live.values() if c.watcher is not None]
        if self._log_rotation is not None:
            tasks.append(self._log_rotation)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- create --------------------------------------------------------------------------------------

    async def create(self, config: ContainerConfig) -> ContainerRecord:
        """Make a container from ``config``: validate everything, snapshot the image, record it."""
        admitted = await admit(config, self.images, self.cgroups, self.networks)  # every check, first
        config, image, image_config = admitted.config, admitted.image, admitted.image_config
        # The name is claimed under the lock; the slow part (volumes, the snapshot mount, the
        # fsynced record) runs outside it, so concurrent creates do not queue behind each other.
        async with self._names_lock:
            name = bounds.check_container_name(config.name or self._unused_name())
            if name in self._claimed or any(c.record.name == name for c in self.live.values()):
                raise AlreadyExists(f"the container name {name!r} is already in use")
            self._claimed.add(name)
        cid = secrets.token_hex(32)
        try:
            # volumes: -v, --mount, --volumes-from and the image's VOLUMEs → mounts; volumes made
            mounts = await self.volumes.resolve(
                config.mounts, config.tmpfs, config.volumes_from, image_config.get("Volumes") or {}, self.get
            )
            config = replace(config, mounts=mounts, name=name)
            record = ContainerRecord(
                id=cid,
                name=name,
                config=config,
                image_id=image.id,
                created=now(),
                ports=admitted.ports,
                command=list(admitted.process.args),
            )
            await asyncio.to_thread(self._make, record, image)
            async with self._names_lock:
                await self.networks.reserve(record)  # networks: its address on its user network
                self.live[cid] = LiveContainer(record)
        except BaseException:
            await self.networks.release(cid)  # networks
            await asyncio.to_thread(self._discard, cid)
            raise
        finally:
            self._claimed.discard(name)
        self.emit(Subject.CONTAINER_CREATED, record)
        return record

    def _make(self, record: ContainerRecord, image: Any) -> None:
        """The container's directory, writable layer and durable record (blocking)."""
        (self._dir(record.id) / "bundle").mkdir(parents=True)
        self.snapshots.prepare(record.id, self.images.layer_dirs(image))
        self.save(record, durable=True)

    def _unused_name(self) -> str:
        taken = self._claimed | {c.record.name for c in self.live.values()}
        for _ in range(100):
            name = random_name()
            if name not in taken:
                return name
        return f"dockyard_{secrets.token_hex(4)}"

    def _discard(self, cid: str) -> None:
        with contextlib.suppress(Exception):
            self.snapshots.remove(cid)
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    # --- start / exit --------------------------------------------------------------------------------

    async def start(self, ref: str, before_start: Callable[[], Any] | None = None) -> ContainerRecord:
        """Run a created or exited container; returns once its process runs.

        ``before_start`` (async) runs after the container is created by runc and before its
        process starts — attach uses it, so not a byte of output is missed.
        """
        live = self._find(ref)
        self.restarts.user_start(live)  # a user's start: restart count and manual stop reset
        try:
            async with live.lock:
                record = live.record
                if record.state in (State.RUNNING, State.PAUSED):
                    return record
                return await self.start_locked(live, before_start)
        except Exception:
            if live.record.config.auto_remove:  # docker run --rm: a container that never ran goes too
                with contextlib.suppress(NotFound):
                    await self.remove(live.record.id, force=True)
            raise

    async def start_locked(
        self, live: LiveContainer, before_start: Callable[[], Any] | None
    ) -> ContainerRecord:
        record = live.record
        cid = record.id
        paths = self._paths(cid)
        sync_fd = -1
        try:
            spec = await asyncio.to_thread(self._prepare_bundle, record)  # one hop: it is all disk
            pid, sync_fd = await self.monitor.create(
                cid, record.name, paths, tty=record.config.tty, stdin=record.config.interactive
            )
            if record.config.network == "slirp4netns":
                await self.slirp.attach(pid, self._dir(cid), record.ports)
            await self.networks.attach(record, pid)  # networks: veths to user networks' bridges, -p
            if before_start is not None:
                await before_start()
            await self.monitor.start(cid, pid)
        except BaseException as exc:
            if sync_fd >= 0:
                os.close(sync_fd)
            await self._abort_start(record, exc)
            live.started.set()  # a next-exit wait ends too: this start's exit code is its failure's
            raise
        live.exited.clear()
        live.started.set()
        record = self.save(
            replace(
                record,
                state=State.RUNNING,
                pid=pid,
                started=now(),
                finished="",
                exit_code=0,
                error="",
                oom_killed=False,
                command=list(spec["process"]["args"]),
            )
        )
        live.watcher = asyncio.create_task(self._watch(live, sync_fd))
        self.emit(Subject.CONTAINER_STARTED, record, pid=pid)
        self.restarts.started(live)  # health checks and restart policies
        self.health.start(live)
        return record

    def _prepare_bundle(self, record: ContainerRecord) -> dict[str, Any]:
        """Mount the container's rootfs and write its bundle; returns the spec (blocking)."""
        image = self.images.resolve(record.image_id)
        rootfs = self.snapshots.mount(record.id, self.images.layer_dirs(image))
        return self._write_bundle(record, rootfs, self.images.config(image).get("config") or {})

    def _write_bundle(
        self, record: ContainerRecord, rootfs: Path, image_config: dict[str, Any]
    ) -> dict[str, Any]:
        d = self._dir(record.id)
        run = run_config(record.config)
        run = replace(run, binds=[*run.binds, *self.volumes.mounts(record.config.mounts, rootfs)])  # volumes
        if self.cgroups.usable:  # the container's own cgroup, with its limits
            run = replace(
                run,
                cgroups_path=self.cgroups.cgroups_path(record.id),
                resources=self.cgroups.resources(record.config.limits),
            )
        process = ocispec.merge_process(image_config, run)
        uid, gid, gids = passwd.resolve_user(rootfs, process.user)
        hostname = record.config.hostname or record.short_id
        etc = d / "etc"
        etc.mkdir(exist_ok=True)
        # networks: user networks write their own hosts (peers by name) and resolv.conf
        if is_user_network(record.config.network):
            hosts, resolv, hostname_file = self.networks.etc_files(record, etc, hostname)
        else:
            hosts, resolv, hostname_file = etcfiles.etc_files(
                etc, hostname, record.config.network, record.config.extra_hosts, record.config.dns
            )
        netns = None
        spec = ocispec.build_spec(
            process,
            rootfs,
            run,
            uid=uid,
            gid=gid,
            gids=gids,
            hostname=hostname,
            netns_path=netns,
            hosts_file=hosts,
            resolv_file=resolv,
            hostname_file=hostname_file,
            seccomp=self.seccomp(privileges.capabilities(run.cap_add, run.cap_drop, run.privileged)),
            init_binary=privileges.init_binary() if run.init else None,
        )
        tmp = d / "bundle" / "config.json.tmp"
        tmp.write_text(json.dumps(spec))
        tmp.replace(d / "bundle" / "config.json")
        return spec

    async def _abort_start(self, record: ContainerRecord, exc: BaseException) -> None:
        """Undo a start that failed half-way; the container stays, marked with why."""
        self.slirp.detach(self._dir(record.id))
        await self.networks.detach(record)  # networks
        await self.monitor.kill(record.id, signal.SIGKILL)
        await self.monitor.delete(record.id)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.snapshots.unmount, record.id)
        message = str(exc)
        code = 127 if "not found" in message or "no such file" in message.lower() else 126
        if isinstance(exc, asyncio.CancelledError):
            code = 125
        self.save(replace(record, exit_code=code, error=message))

    async def _watch(self, live: LiveContainer, sync_fd: int) -> None:
        code = await Monitor.wait_sync(sync_fd)
        if code is None:  # conmon went away without a word; trust its exit file if any
            code = Monitor.exit_code(self._paths(live.record.id))
        await self._on_exit(live, code)

    async def _on_exit(self, live: LiveContainer, code: int | None) -> None:
        self.health.stop(live)  # health checks end with the process
        record = live.record
        paths = self._paths(record.id)
        error = ""
        state = State.EXITED
        if code is None:  # conmon died without an exit code: the container may well still run
            if await self._stop_unmonitored(record.id):
                code, error = 137, "its monitor (conmon) was killed, so the container was stopped"
            else:
                state, error = State.DEAD, "the container's monitor ended without an exit code"
        oom = await asyncio.to_thread(self._release, record.id)
        oom = oom or paths.oom.exists()
        record = self.save(
            replace(
                live.record,  # read again: a rename (or update) may have landed during the awaits
                state=state,
                exit_code=255 if code is None else code,
                finished=now(),
                pid=0,
                oom_killed=oom,
                error=error,
            )
        )
        await self.networks.detach(record)  # networks: its forwarder stops, peers' hosts drop it
        live.exited.set()
        live.watcher = None
        self.emit(Subject.CONTAINER_DIED, record, exitCode=record.exit_code, oomKilled=oom)
        self.restarts.exited(live)  # the restart policy decides
        if record.config.auto_remove:
            with contextlib.suppress(NotFound):
                await self.remove(record.id, force=True)

    async def _stop_unmonitored(self, cid: str) -> bool:
        """Kill a container whose conmon is gone, if its init still lives; True if it did.

        Nothing holds such a container's stdio, log or exit code any more, and a second start
        would mount its upper directory twice: it is stopped and reported, never left running.
        """
        state = await self.monitor.state(cid)
        if state is None or state.get("status") not in ("running", "paused", "created"):
            return False
        log.warning("container outlived its monitor; stopping it", id=cid[:12], pid=state.get("pid"))
        if state.get("status") == "paused":
            with contextlib.suppress(FailedPrecondition):
                await self.monitor.resume(cid)
        await self.monitor.kill(cid, signal.SIGKILL)
        for _ in range(200):  # its init is its pid namespace's: every process goes with it
            state = await self.monitor.state(cid)
            if state is None or state.get("status") == "stopped":
                break
            await asyncio.sleep(0.05)
        return True

    def _release(self, cid: str) -> bool:
        """What an exited container held: its slirp4netns, runc's record, its cgroup, its mount.
        Returns whether the cgroup saw an OOM kill (read before the cgroup goes)."""
        self.slirp.detach(self._dir(cid))
        oom = self.cgroups.oom_killed(cid)
        self.monitor.forget(cid)
        self.cgroups.remove(cid)
        with contextlib.suppress(Exception):
            self.snapshots.unmount(cid)
        return oom

    # --- signals -------------------------------------------------------------------------------------

    async def kill(self, ref: str, sig: str | int | None = None) -> ContainerRecord:
        live = self._find(ref)
        number = runflags.parse_signal(str(sig)) if sig else signal.SIGKILL
        if live.record.state not in (State.RUNNING, State.PAUSED):
            raise FailedPrecondition(f"container {live.record.name} is not running")
        self.reserve.release_if_full()
        await self.restarts.user_kill(live, number)  # SIGKILL or the stop signal: a user's stop
        await self.monitor.kill(live.record.id, number)
        self.emit(Subject.CONTAINER_KILLED, live.record, signal=number)
        return live.record

    async def stop(self, ref: str, timeout: int | None = None) -> ContainerRecord:
        """Stop signal, then SIGKILL after ``timeout`` seconds. Idempotent."""
        live = self._find(ref)
        self.reserve.release_if_full()
        await self.restarts.user_stop(live)  # no restart, until the next start
        record = live.record
        if record.state not in (State.RUNNING, State.PAUSED):
            return record
        grace = timeout if timeout is not None and timeout >= 0 else None
        if grace is None:
            grace = record.config.stop_timeout or DEFAULT_STOP_TIMEOUT
        image_signal = ""
        with contextlib.suppress(NotFound):
            image = await asyncio.to_thread(self.images.resolve, record.image_id)
            image_signal = ((await asyncio.to_thread(self.images.config, image)).get("config") or {}).get(
                "StopSignal", ""
            )
        sig = runflags.parse_signal(record.config.stop_signal or image_signal or "SIGTERM")
        if record.state is State.PAUSED:
            await self.monitor.resume(record.id)
        await self.monitor.kill(record.id, sig)
        try:
            await asyncio.wait_for(live.exited.wait(), grace)
        except TimeoutError:
            await self.monitor.kill(record.id, signal.SIGKILL)
            await live.exited.wait()
        self.emit(Subject.CONTAINER_STOPPED, live.record)
        return live.record

    async def restart(self, ref: str, timeout: int | None = None) -> ContainerRecord:
        await self.stop(ref, timeout)
        return await self.start(ref)

    async def wait(self, ref: str, *, next_exit: bool = False) -> int:
        live = self._find(ref)
        if next_exit:
            await live.started.wait()
        await live.exited.wait()
        return live.record.exit_code

    async def pause(self, ref: str, pause: bool) -> ContainerRecord:
        live = self._find(ref)
        async with live.lock:
            record = live.record
            want, have = (State.PAUSED, State.RUNNING) if pause else (State.RUNNING, State.PAUSED)
            if record.state is not have:
                raise FailedPrecondition(f"container {record.name} is not {have.value}")
            try:
                await (self.monitor.pause if pause else self.monitor.resume)(record.id)
            except FailedPrecondition as exc:
                raise FailedPrecondition(
                    f"cannot {'pause' if pause else 'unpause'} {record.name}: it needs a freezer cgroup "
                    f"this user may write ({exc})"
                ) from exc
            record = self.save(replace(record, state=want))
        self.emit(Subject.CONTAINER_PAUSED if pause else Subject.CONTAINER_UNPAUSED, record)
        return record

    # --- resource limits (dockyard.runtime.cgroups) ---------------------------------------------------

    async def update(self, ref: str, changes: dict[str, int]) -> ContainerRecord:
        """docker update: change resource limits (``changes``: Limits field → value), checked as at
        create; a running or paused container gets them at once (runc update), any other at start."""
        live = self._find(ref)
        if not changes:
            raise InvalidArgument("update: give at least one limit (--memory, --cpus, --pids-limit, …)")
        async with live.lock:
            record = live.record
            limits = record.config.limits.updated(changes).validate()
            self.cgroups.require(Limits.from_dict(changes))
            if record.state in (State.RUNNING, State.PAUSED):
                await self.monitor.update(record.id, self.cgroups.resources(limits, lifting=True))
            record = self.save(replace(record, config=replace(record.config, limits=limits)), strict=True)
        self.emit(Subject.CONTAINER_UPDATED, record, limits=limits.to_dict())
        return record

    # --- remove / rename / prune ---------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> ContainerRecord:
        live = self._find(ref)
        self.reserve.release_if_full()
        await self.restarts.removing(live, force)  # no restart of what is being removed
        record = live.record
        if record.state in (State.RUNNING, State.PAUSED):
            if not force:
                raise FailedPrecondition(
                    f"cannot remove container {record.name}: it is {record.state.value}; "
                    "stop it first or use --force"
                )
            await self.monitor.kill(record.id, signal.SIGKILL)
            await live.exited.wait()
            if record.config.auto_remove and record.id not in self.live:
                return record  # its own exit already removed it
        async with live.lock:
            if self.live.pop(record.id, None) is None:
                return record
            await asyncio.to_thread(self._discard, record.id)
            await self.networks.release(record.id)  # networks: its addresses are free again
            await asyncio.to_thread(self.reserve.ensure)  # its layer's space may be free again
        self.emit(Subject.CONTAINER_REMOVED, record)
        # volumes: rm -v and --rm take the container's anonymous volumes along (unless shared)
        await self.volumes.release(record.config.mounts, volumes or record.config.auto_remove)
        return record

    async def rename(self, ref: str, name: str) -> ContainerRecord:
        live = self._find(ref)
        bounds.check_container_name(name)
        async with self._names_lock:
            if name in self._claimed or any(
                c.record.name == name and c is not live for c in self.live.values()
            ):
                raise AlreadyExists(f"the container name {name!r} is already in use")
            old = live.record.name
            record = self.save(
                replace(live.record, name=name, config=replace(live.record.config, name=name)), strict=True
            )
        await self.networks.renamed(record.id)  # networks: peers' hosts files know the new name
        self.emit(Subject.CONTAINER_RENAMED, record, oldName=old)
        return record

    async def prune(self) -> tuple[list[str], int]:
        deleted: list[str] = []
        reclaimed = 0
        for record in self.list_containers(all=True):
            if record.state in (State.EXITED, State.CREATED, State.DEAD):
                reclaimed += await asyncio.to_thread(_du, self.snapshots.upper(record.id))
                with contextlib.suppress(NotFound, FailedPrecondition):
                    await self.remove(record.id)
                    deleted.append(record.id)
        return deleted, reclaimed

    # --- stdio ---------------------------------------------------------------------------------------

    async def attach(self, ref: str, *, start: bool) -> tuple[ContainerRecord, AttachStream]:
        """Connect to the container's stdio; with ``start``, start it once connected."""
        live = self._find(ref)
        holder: list[AttachStream] = []

        async def connect() -> None:
            holder.append(await AttachStream.connect(self._paths(live.record.id)))

        if start and live.record.state not in (State.RUNNING, State.PAUSED):
            record = await self.start(ref, before_start=connect)
            if holder:
                return record, holder[0]
        if live.record.state not in (State.RUNNING, State.PAUSED):
            raise FailedPrecondition(f"cannot attach to {live.record.name}: it is not running")
        return live.record, await AttachStream.connect(self._paths(live.record.id))

    def resize(self, ref: str, rows: int, cols: int) -> None:
        Monitor.resize(self._paths(self._find(ref).record.id), rows, cols)

    async def logs(
        self, ref: str, *, follow: bool, since: datetime | None, tail: int, timestamps: bool
    ) -> AsyncIterator[tuple[str, bytes, str]]:
        """(stream, bytes, RFC3339 time) from the container's log; ``follow`` until it exits."""
        live = self._find(ref)
        path = self._paths(live.record.id).log
        # Without timestamps, consecutive lines go out together: a log is read at disk speed.
        async for entry in follow_log(
            path, live.exited, follow=follow, since=since, tail=tail, coalesce=not timestamps
        ):
            yield entry

    # --- inside the container ------------------------------------------------------------------------

    def rootfs_for(self, ref: str) -> tuple[ContainerRecord, Path, list[Path]]:
        """The container's merged rootfs (mounted if it is not running) and its lowers."""
        record = self._find(ref).record
        image = self.images.resolve(record.image_id)
        lowers = self.images.layer_dirs(image)
        return record, self.snapshots.mount(record.id, lowers), lowers

    def copy_root(self, ref: str, path: str, *, write: bool) -> tuple[Path, str, str]:
        """Where ``docker cp`` finds ``path`` of the container: the volume or host directory mounted
        over it (a mount is not in the rootfs, so a copy there would land under it, unseen, and
        be baked in by commit), else the merged rootfs. Returns (host root, the path under it, the
        name to archive that root under when ``path`` is the mount point itself).

        A write into a read-only mount is FailedPrecondition, as docker's.
        """
        record, rootfs, _ = self.rootfs_for(ref)
        wanted = "/" + path.lstrip("/")
        key = posixpath.normpath(wanted)
        best = None
        for m in record.config.mounts:
            inside = key == m.target or key.startswith(m.target.rstrip("/") + "/")
            if (
                m.kind in (Kind.BIND, Kind.VOLUME)
                and inside
                and (best is None or len(m.target) > len(best.target))
            ):
                best = m
        if best is None:
            return rootfs, path, ""
        if write and best.read_only:
            raise FailedPrecondition(f"mounted volume is marked read-only: {best.target}")
        host = self.volumes.mountpoint(best.source) if best.kind == Kind.VOLUME else Path(best.source)
        rest = wanted[len(best.target) :] if wanted.startswith(best.target) else key[len(best.target) :]
        return host, rest or "/", posixpath.basename(best.target)

    async def diff(self, ref: str) -> list[Any]:
        record = self._find(ref).record
        image = await asyncio.to_thread(self.images.resolve, record.image_id)
        lowers = await asyncio.to_thread(self.images.layer_dirs, image)
        return await asyncio.to_thread(self.snapshots.changes, record.id, lowers)

    async def commit(self, ref: str, *, reference: str, message: str, author: str, changes: list[str]) -> Any:
        """The writable layer as a new image layer on top of the container's image."""
        record = self._find(ref).record
        image = await asyncio.to_thread(self.images.resolve, record.image_id)
        lowers = await asyncio.to_thread(self.images.layer_dirs, image)
        fd, tmp_name = tempfile.mkstemp(prefix="commit-", suffix=".tar", dir=self.root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                await asyncio.to_thread(self.snapshots.write_layer, record.id, lowers, out)
            overrides = {"Cmd": record.command} if not changes else None
            created_by = " ".join(record.command)
            new = await asyncio.to_thread(
                self.images.commit_layer,
                image,
                tmp,
                changes,
                message,
                author,
                created_by,
                overrides,
                reference or None,
            )
        except OSError as exc:
            if exc.errno not in FULL_ERRNOS:
                raise
            raise storage_full(exc, tmp) from None  # one line naming the full filesystem
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
        return new

    async def top(self, ref: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
        record = self._find(ref).record
        if record.state not in (State.RUNNING, State.PAUSED):
            raise FailedPrecondition(f"container {record.name} is not running")
        pids = await asyncio.to_thread(pid_namespace_members, record.pid)
        # As docker: run ps with the user's options, keep the rows of the container's processes.
        proc = await asyncio.create_subprocess_exec(
            "ps", *(ps_args or ["-ef"]), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidArgument(f"ps {' '.join(ps_args)}: {err.decode(errors='replace').strip()}")
        lines = out.decode(errors="replace").splitlines()
        titles = lines[0].split() if lines else []
        if "PID" not in titles:
            raise InvalidArgument("top: the ps options must include the PID column")
        column = titles.index("PID")
        rows = [ln.split(None, len(titles) - 1) for ln in lines[1:]]
        return titles, [r for r in rows if len(r) > column and r[column] in set(pids)]

    async def exec(
        self,
        ref: str,
        args: list[str],
        *,
        env: list[str],
        user: str,
        workdir: str,
        tty: bool,
        interactive: bool,
        rows: int = 0,
        cols: int = 0,
    ) -> ExecSession:
        """Start ``args`` in the running container (docker exec)."""
        live = self._find(ref)
        record = live.record
        if record.state is not State.RUNNING:
            raise FailedPrecondition(f"container {record.name} is not running")
        if not args:
            raise InvalidArgument("exec needs a command")
        _, rootfs, _ = await asyncio.to_thread(self.rootfs_for, record.id)
        user = user or self._spec_user(record)
        uid, gid, _ = await asyncio.to_thread(passwd.resolve_user, rootfs, user)
        session = await ExecSession.start(
            self.monitor.runc_argv(),
            record.id,
            args,
            env=env,
            cwd=workdir,
            uid=uid,
            gid=gid,
            tty=tty,
            interactive=interactive,
            rows=rows,
            cols=cols,
        )
        self.emit(Subject.CONTAINER_EXEC, record, command=args)
        return session

    def _spec_user(self, record: ContainerRecord) -> str:
        """The user the container's process runs as, from its bundle ("uid:gid")."""
        try:
            spec = json.loads((self._dir(record.id) / "bundle" / "config.json").read_text())
            u = spec["process"]["user"]
            return f"{u['uid']}:{u['gid']}"
        except (OSError, ValueError, KeyError):
            return record.config.user or "0"

    def container_ip(self, record: ContainerRecord) -> str:
        if is_user_network(record.config.network):  # networks
            return self.networks.container_ip(record)
        return CONTAINER_IP if record.config.network == "slirp4netns" else ""


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total
