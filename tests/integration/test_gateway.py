"""The gateway in-process against real backends and a real nats-server."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from dockyard.adapters.grpc.convert import timestamp
from dockyard.adapters.grpc.errors import to_native
from dockyard.adapters.host import HostConfig, ServiceHost
from dockyard.adapters.nats.bus import StreamSettings
from dockyard.adapters.nats.server import NatsServer, free_port
from dockyard.api.builds.v1 import builds_pb2, builds_pb2_grpc
from dockyard.api.events.v1 import events_pb2, events_pb2_grpc
from dockyard.api.images.v1 import images_pb2, images_pb2_grpc
from dockyard.api.registry.v1 import registry_pb2, registry_pb2_grpc
from dockyard.api.system.v1 import system_pb2, system_pb2_grpc
from dockyard.core.errors import FailedPrecondition, NotFound, Reason, Unavailable
from dockyard.core.eventdata import ManifestDeleted, TagChanged
from dockyard.core.events import Subject, new_event
from dockyard.core.service import ServiceInfo, ServiceState
from dockyard.gateway.app import GatewayConfig, build
from dockyard.registry import app as registry_app
from dockyard.registry.config import RegistryConfig


class _Images(images_pb2_grpc.ImagesServicer):
    """The runtime's stub, but for one answer of its own: UNAVAILABLE, as when a registry is down."""

    async def Login(self, request: images_pb2.LoginRequest, context: object) -> images_pb2.LoginResponse:
        raise Unavailable(f"registry {request.registry} is unreachable")

    async def Inspect(self, request: images_pb2.InspectImageRequest, context: object) -> images_pb2.Image:
        raise NotFound(f"no such image: {request.reference}", reason=Reason.NO_SUCH_IMAGE)

    async def Save(
        self, request: images_pb2.SaveRequest, context: object
    ) -> AsyncIterator[images_pb2.SaveChunk]:
        yield images_pb2.SaveChunk(data=b"first")
        raise NotFound(f"no such image: {request.references[0]}", reason=Reason.NO_SUCH_IMAGE)


@dataclass
class Rig:
    channel: grpc.aio.Channel
    registry: ServiceHost
    gateway: ServiceHost


async def _serve(host: ServiceHost) -> asyncio.Task[None]:
    task = asyncio.create_task(host.run())
    for _ in range(200):
        if host.server.port:
            return task
        await asyncio.sleep(0.02)
    raise RuntimeError("service did not start")


@pytest.fixture
async def rig(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Rig]:
    stream = StreamSettings(name="T_GATEWAY")

    def host_config(name: str) -> HostConfig:
        # as under `dockyard up`: backends on private sockets, the gateway on its public one
        if name == "gateway":
            listen, mode = f"unix:{tmp_path / 'dockyard.sock'}", 0o660
        else:
            listen, mode = f"unix:{tmp_path / 'sockets' / f'{name}.sock'}", 0o600
        return HostConfig(name, listen, tmp_path / name, nats_server.url, "n1", stream, socket_mode=mode)

    registry_host, _ = registry_app.build(
        RegistryConfig(root=tmp_path / "registry" / "storage", port=free_port()), host_config("registry")
    )
    runtime_host = ServiceHost(
        host_config("runtime"),
        lambda: ServiceInfo("runtime", ServiceState.NOT_IMPLEMENTED, "not yet", node="n1"),
        [
            (
                images_pb2_grpc.add_ImagesServicer_to_server,
                _Images(),
                "dockyard.api.images.v1.Images",
            )
        ],
    )
    dead_builder = f"unix:{tmp_path / 'sockets' / 'builder.sock'}"  # nothing listens here
    gateway_host, backends, events = build(
        GatewayConfig(
            host_config("gateway"),
            registry_host.config.grpc_listen,
            runtime_host.config.grpc_listen,
            dead_builder,
        )
    )
    tasks = [await _serve(h) for h in (registry_host, runtime_host, gateway_host)]
    channel = grpc.aio.insecure_channel(gateway_host.config.grpc_listen)
    try:
        yield Rig(channel, registry_host, gateway_host)
    finally:
        await channel.close()
        for host in (gateway_host, runtime_host, registry_host):
            host.request_stop()
        await asyncio.gather(*tasks)
        await events.close()
        for backend in backends:
            await backend.close()


async def test_the_gateway_serves_its_socket_0660_and_refuses_tcp_without_mutual_tls(
    rig: Rig, tmp_path: Path
) -> None:
    socket = tmp_path / "dockyard.sock"
    assert socket.is_socket() and stat.S_IMODE(socket.stat().st_mode) == 0o660
    assert stat.S_IMODE((tmp_path / "sockets" / "registry.sock").stat().st_mode) == 0o600
    tcp = HostConfig("gateway", f"127.0.0.1:{free_port()}", tmp_path / "gateway-tcp")
    with pytest.raises(FailedPrecondition, match="without mutual TLS"):
        build(GatewayConfig(tcp, "unix:/nowhere/r.sock", "unix:/nowhere/x.sock", "unix:/nowhere/b.sock"))


async def test_status_reports_every_backend_without_failing_on_a_dead_one(rig: Rig) -> None:
    status = await system_pb2_grpc.PlatformStub(rig.channel).Status(system_pb2.StatusRequest(), timeout=10)
    by_name = {b.name: b for b in status.backends}
    assert by_name["registry"].health == "SERVING"
    assert by_name["registry"].info.state == system_pb2.SERVICE_STATE_SERVING
    assert by_name["runtime"].info.state == system_pb2.SERVICE_STATE_NOT_IMPLEMENTED
    assert by_name["builder"].info.state == system_pb2.SERVICE_STATE_UNREACHABLE
    assert status.gateway.service == "gateway"


async def test_forwarding_keeps_the_backends_answers_and_statuses(rig: Rig) -> None:
    admin = registry_pb2_grpc.RegistryAdminStub(rig.channel)
    usage = await admin.Usage(registry_pb2.UsageRequest(), timeout=10)
    assert usage.blobs == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.ListTags(registry_pb2.ListTagsRequest(repository="no/such"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.ListTags(registry_pb2.ListTagsRequest(repository="../../etc"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # a server-streaming method reaches the runtime, whose stub answers UNIMPLEMENTED
    images = images_pb2_grpc.ImagesStub(rig.channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in images.Pull(images_pb2.PullRequest(reference="x"), timeout=10):
            pass
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_an_errors_reason_crosses_the_gateway_unary_and_streaming(rig: Rig) -> None:
    """A caller acts on the reason, never on the text: it reaches the client through the gateway."""
    images = images_pb2_grpc.ImagesStub(rig.channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await images.Inspect(images_pb2.InspectImageRequest(reference="gone:1"), timeout=10)
    native = to_native(err.value)
    assert isinstance(native, NotFound) and native.reason == Reason.NO_SUCH_IMAGE
    assert str(native) == "no such image: gone:1"
    chunks = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for chunk in images.Save(images_pb2.SaveRequest(references=["gone:2"]), timeout=10):
            chunks.append(chunk.data)
    assert chunks == [b"first"] and to_native(err.value).reason == Reason.NO_SUCH_IMAGE
    # an error without a reason has none
    admin = registry_pb2_grpc.RegistryAdminStub(rig.channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.ListTags(registry_pb2.ListTagsRequest(repository="no/such"), timeout=10)
    assert to_native(err.value).reason == ""


async def test_unavailable_names_the_backend_only_when_the_backend_is_what_is_down(rig: Rig) -> None:
    images = images_pb2_grpc.ImagesStub(rig.channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await images.Login(images_pb2.LoginRequest(registry="r.example:5000"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == "registry r.example:5000 is unreachable"  # the runtime answered

    builds = builds_pb2_grpc.BuildsStub(rig.channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await builds.PruneCache(builds_pb2.PruneCacheRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details().startswith("builder unreachable at unix:")  # nothing listens there


async def test_events_replay_filter_and_resume_by_sequence(rig: Rig) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    publish = rig.registry.publisher.publish
    publish(
        new_event(
            Subject.REGISTRY_TAG_CHANGED,
            "/t",
            "app:1",
            TagChanged("app", "1", "sha256:00", ""),
            {"team": "a"},
        )
    )
    publish(
        new_event(
            Subject.REGISTRY_TAG_CHANGED,
            "/t",
            "app:2",
            TagChanged("app", "2", "sha256:00", ""),
            {"team": "b"},
        )
    )
    publish(
        new_event(
            Subject.REGISTRY_MANIFEST_DELETED, "/t", "app@sha256:00", ManifestDeleted("app", "sha256:00")
        )
    )
    assert await rig.registry.drainer.flush(10)
    events = events_pb2_grpc.EventsStub(rig.channel)

    async def collect(**kwargs: object) -> list[events_pb2.Event]:
        request = events_pb2.SubscribeRequest(until=timestamp(datetime.now(UTC)), **kwargs)  # type: ignore[arg-type]
        return [e async for e in events.Subscribe(request, timeout=10)]

    every = await collect(since=timestamp(before))
    tags = [e.subject for e in every if e.type == "io.dockyard.registry.tag_changed"]
    assert tags == ["app:1", "app:2"]
    assert [e.subject for e in await collect(since=timestamp(before), filters=["label=team=b"])] == ["app:2"]
    deleted = await collect(since=timestamp(before), filters=["type=registry", "action=manifest_deleted"])
    assert [e.subject for e in deleted] == ["app@sha256:00"]
    resumed = await collect(start_sequence=every[-2].sequence + 1)
    assert [e.id for e in resumed] == [every[-1].id]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(filters=["colour=red"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_live_subscriber_sees_new_events(rig: Rig) -> None:
    events = events_pb2_grpc.EventsStub(rig.channel)
    call = events.Subscribe(events_pb2.SubscribeRequest(filters=["entity=live:1"]), timeout=20)
    await asyncio.sleep(0.5)  # the ordered consumer is created before we publish
    rig.registry.publisher.publish(
        new_event(Subject.REGISTRY_TAG_CHANGED, "/t", "live:1", TagChanged("live", "1", "sha256:00", ""))
    )
    first = await asyncio.wait_for(call.read(), 15)
    assert first.subject == "live:1"
    call.cancel()


async def test_reflection_lists_every_public_service(rig: Rig) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    def services() -> set[str]:
        with grpc.insecure_channel(rig.gateway.config.grpc_listen) as channel:
            return set(ProtoReflectionDescriptorDatabase(channel).get_services())

    names = await asyncio.to_thread(services)
    for name in (
        "dockyard.api.system.v1.System",
        "dockyard.api.system.v1.Platform",
        "dockyard.api.events.v1.Events",
        "dockyard.api.registry.v1.RegistryAdmin",
        "dockyard.api.images.v1.Images",
        "dockyard.api.containers.v1.Containers",
        "dockyard.api.builds.v1.Builds",
        "grpc.health.v1.Health",
    ):
        assert name in names


async def test_a_follower_is_told_unavailable_when_nats_goes_away(rig: Rig, nats_server: NatsServer) -> None:
    events = events_pb2_grpc.EventsStub(rig.channel)
    call = events.Subscribe(events_pb2.SubscribeRequest(), timeout=60)
    await asyncio.sleep(0.5)
    nats_server.stop()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(call.read(), 30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "resume" in (err.value.details() or "")
