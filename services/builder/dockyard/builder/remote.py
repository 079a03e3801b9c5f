"""The engine's ``Runtime`` over gRPC: a runtime node's Images and Containers services; also
cachesync's ``RegistryRuntime`` (push, pull, one manifest in or out, with the node's logins).

Every failed call comes back as the core's typed error (``to_native``), so the engine and the
CLI see "no such image" as NotFound whether the node is here or remote. The channel allows
16 MiB messages, as the services' servers do; layers and copies go in 1 MiB chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc

from dockyard.adapters.grpc.channel import service_channel, wait_ready
from dockyard.adapters.grpc.errors import to_native
from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.api.containers.v1 import containers_pb2_grpc
from dockyard.api.images.v1 import images_pb2 as ipb
from dockyard.api.images.v1 import images_pb2_grpc
from dockyard.api.volumes.v1 import volumes_pb2 as vpb
from dockyard.api.volumes.v1 import volumes_pb2_grpc
from dockyard.builder.cachesync import PushProgress
from dockyard.builder.mounts import RunMount
from dockyard.builder.node import Image, Output, PathInfo, RunSpec, StepSpec
from dockyard.core.errors import Unavailable
from dockyard.core.oci.manifest import ManifestDescriptor

_MAX = 16 * 1024 * 1024
READY_TIMEOUT_S = 15.0


def _image(msg: ipb.Image) -> Image:
    doc = json.loads(msg.config) if msg.config else {}
    return Image(msg.id, doc)


def _step(step: StepSpec) -> ipb.BuildStep:
    msg = ipb.BuildStep(parent=step.parent, created_by=step.created_by)
    if step.config is not None:
        msg.config = json.dumps(step.config, sort_keys=True, separators=(",", ":")).encode()
    msg.created.FromSeconds(step.created)
    if step.clamp_mtime is not None:
        msg.clamp_mtime = step.clamp_mtime
    msg.empty_layer_history.extend(step.history)
    return msg


def _mount(m: RunMount) -> cpb.Mount:
    # a cache volume starts empty (BuildKit's), never filled from the image at its target
    return cpb.Mount(
        type=m.type, source=m.source, target=m.target, read_only=m.read_only, no_copy=m.type == "volume"
    )


def _tmpfs(m: RunMount) -> str:
    """A ``--tmpfs`` string: BuildKit's tmpfs mounts allow exec (the runtime's default is noexec)."""
    opts = ["exec", *([f"size={m.size}"] if m.size else []), *(["ro"] if m.read_only else [])]
    return f"{m.target}:{','.join(opts)}"


class RemoteRuntime:
    """A runtime node reached at ``address`` (``unix:/path`` or ``host:port``)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.owner = uuid.uuid4().hex  # labels this process's step containers (dockyard.builder.inflight)
        self.channel = service_channel(
            address,
            options=[("grpc.max_receive_message_length", _MAX), ("grpc.max_send_message_length", _MAX)],
        )
        self.images = images_pb2_grpc.ImagesStub(self.channel)
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.volumes = volumes_pb2_grpc.VolumesStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait for the runtime to answer (it may be starting, or restarting, beside us)."""
        await wait_ready(self.channel, f"the runtime at {self.address}", timeout)

    async def inspect(self, ref: str) -> Image:
        try:
            return _image(await self.images.Inspect(ipb.InspectImageRequest(reference=ref)))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def add_layer(self, step: StepSpec, chunks: AsyncIterator[bytes]) -> Image:
        async def requests() -> AsyncIterator[ipb.AddLayerInput]:
            yield ipb.AddLayerInput(step=_step(step))
            async for chunk in chunks:
                yield ipb.AddLayerInput(data=chunk)

        try:
            return _image(await self.images.AddLayer(requests()))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def configure(self, step: StepSpec) -> Image:
        try:
            return _image(await self.images.Configure(_step(step)))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def commit(self, container: str, step: StepSpec) -> Image:
        msg = _step(step)
        msg.container_id = container
        try:
            return _image(await self.images.CommitStep(msg))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def run(self, spec: RunSpec, output: Output) -> tuple[str, int]:
        """Create a container for the step, attach, start, stream its output; (id, exit code)."""
        cspec = cpb.ContainerSpec(
            image=spec.image,
            command=spec.argv,
            entrypoint=[""],
            env=spec.env,
            workdir=spec.workdir,
            user=spec.user,
            network=spec.network,
            labels={"dockyard.build": "step", "dockyard.build.owner": self.owner},
            mounts=[_mount(m) for m in spec.mounts if m.type != "tmpfs"],
            tmpfs=[_tmpfs(m) for m in spec.mounts if m.type == "tmpfs"],
        )
        try:
            created = await self.containers.Create(cpb.CreateContainerRequest(spec=cspec))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

        async def attach() -> AsyncIterator[cpb.AttachInput]:
            yield cpb.AttachInput(start=cpb.AttachStart(container_id=created.id, start=True, wait=True))

        code = -1
        try:
            async for out in self.containers.Attach(attach()):
                kind = out.WhichOneof("output")
                if kind == "stdout":
                    await output("stdout", out.stdout)
                elif kind == "stderr":
                    await output("stderr", out.stderr)
                elif kind == "exit_code":
                    code = out.exit_code
        except grpc.aio.AioRpcError as exc:
            await self.remove_container(created.id)
            raise to_native(exc) from None
        except BaseException:
            # the build was cancelled (its client went away): the step's process must not run on
            await asyncio.shield(self._remove_quietly(created.id))
            raise
        return created.id, code

    async def _remove_quietly(self, container: str) -> None:
        with contextlib.suppress(Exception):
            await self.remove_container(container)

    async def step_containers(self) -> list[str]:
        """Ids of the RUN step containers other builder processes made on this runtime (left by
        one that died: a live builder removes its own)."""
        await self.ready()
        ids: list[str] = []
        token = ""
        try:
            while True:
                page = await self.containers.List(
                    cpb.ListContainersRequest(all=True, page_token=token), timeout=30
                )
                ids += [
                    c.id
                    for c in page.containers
                    if c.spec.labels.get("dockyard.build") == "step"
                    and c.spec.labels.get("dockyard.build.owner") != self.owner
                ]
                token = page.next_page_token
                if not token:
                    return ids
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def remove_container(self, container: str) -> None:
        try:
            await self.containers.Remove(cpb.RemoveContainerRequest(id=container, force=True, volumes=True))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def copy_from(self, image: str, path: str, out: Callable[[bytes], Any]) -> None:
        """A tar of ``path`` in ``image`` (docker cp's form), through a created, never started container."""
        cspec = cpb.ContainerSpec(image=image, command=["true"], entrypoint=[""], network="none")
        try:
            created = await self.containers.Create(cpb.CreateContainerRequest(spec=cspec))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        try:
            async for chunk in self.containers.CopyFrom(cpb.CopyFromRequest(id=created.id, path=path)):
                out(chunk.data)
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        finally:
            await self.remove_container(created.id)

    async def tag(self, image: str, reference: str) -> None:
        try:
            await self.images.Tag(ipb.TagRequest(source=image, target=reference))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def stat_paths(self, image: str, paths: list[str]) -> dict[str, PathInfo]:
        try:
            found = await self.images.StatPaths(ipb.StatPathsRequest(image=image, paths=paths))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        return {s.path: PathInfo(s.resolved, s.mode, s.uid, s.gid) for s in found.stats}

    # -- registries (cachesync.RegistryRuntime: --cache-to, --cache-from, build --push) ---------

    async def locate(self, image: str) -> tuple[str, int]:
        try:
            msg = await self.images.Inspect(ipb.InspectImageRequest(reference=image))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        return msg.manifest.digest, len(msg.layers)

    async def push(self, reference: str, progress: PushProgress) -> ManifestDescriptor:
        pushed = None
        try:
            async for msg in self.images.Push(ipb.PushRequest(reference=reference)):
                if msg.HasField("progress"):
                    await progress(msg.progress.id, msg.progress.status)
                if msg.HasField("manifest"):
                    pushed = msg.manifest
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        if pushed is None:
            raise Unavailable(f"the push of {reference} ended without a manifest")
        return ManifestDescriptor(pushed.media_type, pushed.digest, pushed.size)

    async def pull(self, reference: str) -> str:
        image = ""
        try:
            async for msg in self.images.Pull(ipb.PullRequest(reference=reference)):
                if msg.HasField("image"):
                    image = msg.image.id
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        if not image:
            raise Unavailable(f"the pull of {reference} ended without an image")
        return image

    async def get_manifest(self, reference: str) -> tuple[ManifestDescriptor, bytes]:
        try:
            msg = await self.images.GetManifest(ipb.GetManifestRequest(reference=reference))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        return ManifestDescriptor(msg.media_type, msg.digest, len(msg.content)), msg.content

    async def put_manifest(self, reference: str, media_type: str, body: bytes) -> ManifestDescriptor:
        request = ipb.PutManifestRequest(reference=reference, media_type=media_type, content=body)
        try:
            desc = await self.images.PutManifest(request)
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        return ManifestDescriptor(desc.media_type, desc.digest, desc.size)

    async def squash(self, image: str, base: str, created_by: str, created: int) -> Image:
        request = ipb.SquashRequest(image=image, base=base, created_by=created_by)
        request.created.FromSeconds(created)
        try:
            return _image(await self.images.Squash(request))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def create_volume(self, name: str, labels: Mapping[str, str], opts: Mapping[str, str]) -> None:
        """Make volume ``name`` unless it exists (then it is left as it is)."""
        try:
            await self.volumes.Create(vpb.CreateVolumeRequest(name=name, labels=labels, options=opts))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None

    async def list_volumes(self, filters: Sequence[str]) -> list[str]:
        try:
            found = await self.volumes.List(vpb.ListVolumesRequest(filters=filters))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
        return [v.name for v in found.volumes]

    async def remove_volume(self, name: str) -> None:
        try:
            await self.volumes.Remove(vpb.RemoveVolumeRequest(name=name))
        except grpc.aio.AioRpcError as exc:
            raise to_native(exc) from None
