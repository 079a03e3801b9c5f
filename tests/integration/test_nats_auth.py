"""The platform's NATS permissions, rule by rule, on a real nats-server configured as `dockyard up` does.

Every "denied" is checked for its reason (the server's permissions violation), not only for a
timeout, and every rule is paired with the flow it must leave working.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import api as js_api

from dockyard.adapters.nats.auth import (
    ADMIN,
    EVENT_AREAS,
    GATEWAY,
    IDENTITIES,
    NatsCredentials,
    adopt_unauthenticated_store,
    write_auth,
)
from dockyard.adapters.nats.bus import OutboxDrainer, StreamSettings, connect, ensure_stream, read_events
from dockyard.adapters.nats.server import NatsServer
from dockyard.core.errors import Unavailable
from dockyard.core.eventdata import ContainerDied, ContainerStarted
from dockyard.core.events import Subject, new_event
from dockyard.core.outbox import Outbox, OutboxPublisher

if TYPE_CHECKING:  # the fixture's type; tests/ is not a package
    from conftest import AuthNats

AREAS = sorted({area for areas in EVENT_AREAS.values() for area in areas} | {"service"})
SERVICES = (*EVENT_AREAS, GATEWAY)
DENIED_WAIT = 0.5


@dataclass
class Login:
    nc: NATS
    errors: list[str] = field(default_factory=list)

    def violated(self, kind: str, subject: str) -> bool:
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        return any(wanted in e for e in self.errors)


async def login(nats_: AuthNats, name: str, creds: NatsCredentials | None = None) -> Login:
    creds = creds or nats_.auth.credentials(name)
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(
        nats_.server.url,
        user=creds.user,
        password=creds.password,
        inbox_prefix=creds.inbox_prefix,
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )
    return Login(nc, errors)


@pytest.fixture
async def stream(auth_nats: AuthNats) -> AsyncIterator[AuthNats]:
    """The event stream, made by the admin identity as `dockyard up` does."""
    nc = await connect(auth_nats.server.url, name="up", credentials=auth_nats.auth.credentials(ADMIN))
    await ensure_stream(nc, auth_nats.settings)
    await nc.close()
    yield auth_nats


async def stored(nats_: AuthNats) -> int:
    admin = await login(nats_, ADMIN)
    try:
        return (await admin.nc.jetstream().stream_info(nats_.settings.name)).state.messages
    finally:
        await admin.nc.close()


def test_credentials_are_private_files_and_the_config_holds_no_password(auth_nats: AuthNats) -> None:
    directory = auth_nats.auth.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert files == sorted([*(f"{n}.json" for n in IDENTITIES), "nats-server.conf"])
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    config = auth_nats.auth.config_file.read_text()
    assert "no_auth_user" not in config
    for name in IDENTITIES:
        assert auth_nats.auth.credentials(name).password not in config  # bcrypt hashes only


async def test_a_connection_without_valid_credentials_is_refused(auth_nats: AuthNats) -> None:
    url = auth_nats.server.url
    with pytest.raises(Unavailable, match="Authorization Violation"):
        await connect(url, name="anonymous")
    good = auth_nats.auth.credentials("runtime")
    for wrong in (NatsCredentials("runtime", "guess"), NatsCredentials("nobody", good.password)):
        with pytest.raises(Unavailable, match="Authorization Violation"):
            await connect(url, name="wrong", credentials=wrong)
    nc = await connect(url, name="runtime", credentials=good)  # the real one gets in
    await nc.close()


@pytest.mark.parametrize("service", list(EVENT_AREAS))
async def test_a_service_publishes_only_its_own_areas(stream: AuthNats, service: str) -> None:
    me = await login(stream, service)
    js = me.nc.jetstream()
    try:
        for area in AREAS:
            subject = f"dockyard.{area}.probe"
            if area in (*EVENT_AREAS[service], "service"):
                ack = await js.publish(subject, b"{}", timeout=2)
                assert ack.stream == stream.settings.name
            else:
                with pytest.raises(asyncio.TimeoutError):
                    await js.publish(subject, b"{}", timeout=DENIED_WAIT)
                assert me.violated("publish", subject), (service, area, me.errors)
    finally:
        await me.nc.close()
    assert await stored(stream) == len(EVENT_AREAS[service]) + 1


@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_can_delete_purge_or_change_the_stream(stream: AuthNats, service: str) -> None:
    keep = await login(stream, "runtime")
    await keep.nc.jetstream().publish("dockyard.container.created", b"{}", timeout=2)
    await keep.nc.close()
    me = await login(stream, service)
    js, name = me.nc.jetstream(), stream.settings.name
    attempts = {
        f"$JS.API.STREAM.DELETE.{name}": lambda: js.delete_stream(name),
        f"$JS.API.STREAM.PURGE.{name}": lambda: js.purge_stream(name),
        f"$JS.API.STREAM.UPDATE.{name}": lambda: js.update_stream(
            js_api.StreamConfig(name=name, subjects=[">"])
        ),
        "$JS.API.STREAM.CREATE.FILLER": lambda: js.add_stream(name="FILLER", subjects=["filler.>"]),
        f"$JS.API.STREAM.MSG.DELETE.{name}": lambda: js.delete_msg(name, 1),
    }
    try:
        for subject, attempt in attempts.items():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(attempt(), DENIED_WAIT)
            assert me.violated("publish", subject), (service, subject, me.errors)
    finally:
        await me.nc.close()
    assert await stored(stream) == 1


@pytest.mark.parametrize("service", list(EVENT_AREAS))
async def test_a_publishing_service_reads_nothing(stream: AuthNats, service: str) -> None:
    me = await login(stream, service)
    name = stream.settings.name
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(me.nc.jetstream().stream_info(name), DENIED_WAIT)
        assert me.violated("publish", f"$JS.API.STREAM.INFO.{name}"), me.errors
        for subject in ("dockyard.>", "_INBOX_gateway.>", "_INBOX.>"):
            await me.nc.subscribe(subject)
            await me.nc.flush()
            await asyncio.sleep(0.1)
            assert me.violated("subscription", subject), (subject, me.errors)
    finally:
        await me.nc.close()


async def test_the_gateway_reads_the_services_events_and_publishes_none(
    stream: AuthNats, tmp_path: Path
) -> None:
    # the real flow: the runtime's drainer, logged in as the runtime, publishes; the gateway replays
    outbox = Outbox(tmp_path / "outbox")
    creds = stream.auth.credentials("runtime")
    drainer = OutboxDrainer(outbox, stream.server.url, stream.settings, name="runtime", credentials=creds)
    task = asyncio.create_task(drainer.run())
    try:
        for i in range(5):
            OutboxPublisher(outbox).publish(
                new_event(
                    Subject.CONTAINER_STARTED,
                    "/dockyard/runtime",
                    f"c{i}",
                    ContainerStarted(f"c{i}", "n", "img", 7),
                )
            )
        assert await drainer.flush(10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    gateway = await connect(stream.server.url, name="gw", credentials=stream.auth.credentials(GATEWAY))
    try:
        seen = [
            s.event.subject
            async for s in read_events(gateway, stream.settings, start_sequence=1, follow=False)
        ]
        assert seen == [f"c{i}" for i in range(5)]
        # following: an event published after the reader started arrives too (flow control, heartbeats)
        follow = read_events(gateway, stream.settings, start_sequence=6, follow=True)
        nxt = asyncio.ensure_future(follow.__anext__())
        runtime = await login(stream, "runtime")
        await runtime.nc.jetstream().publish(
            "dockyard.container.died",
            new_event(
                Subject.CONTAINER_DIED, "/dockyard/runtime", "c9", ContainerDied("c9", "n", "img", 0, False)
            ).to_json(),
        )
        await runtime.nc.close()
        assert (await asyncio.wait_for(nxt, 10)).event.subject == "c9"
        await follow.aclose()
    finally:
        await gateway.close()

    me = await login(stream, GATEWAY)
    try:
        forged = new_event(
            Subject.CONTAINER_STARTED, "/dockyard/runtime", "forged", ContainerStarted("f", "n", "img", 7)
        ).to_json()
        for subject in ("dockyard.container.started", "dockyard.image.pushed", "dockyard.build.failed"):
            with pytest.raises(asyncio.TimeoutError):
                await me.nc.jetstream().publish(subject, forged, timeout=DENIED_WAIT)
            assert me.violated("publish", subject), me.errors
        durable = f"$JS.API.CONSUMER.DURABLE.CREATE.{stream.settings.name}.keep"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                me.nc.jetstream().add_consumer(stream.settings.name, durable_name="keep"), DENIED_WAIT
            )
        assert me.violated("publish", durable), me.errors
    finally:
        await me.nc.close()
    gw = await login(stream, GATEWAY)  # its own lifecycle, as every service's host publishes it
    await gw.nc.jetstream().publish("dockyard.service.started", b"{}", timeout=2)
    await gw.nc.close()
    assert await stored(stream) == 7


async def test_admin_manages_the_stream_within_the_accounts_limits_and_forges_no_event(
    stream: AuthNats,
) -> None:
    admin = await login(stream, ADMIN)
    js = admin.nc.jetstream()
    try:
        await ensure_stream(admin.nc, stream.settings)  # idempotent, as every `up` runs it
        limits = (await js.account_info()).limits
        assert limits.max_storage is not None and 0 < limits.max_storage < 2 * stream.settings.max_bytes
        assert limits.max_streams == 1
        with pytest.raises(nats.js.errors.APIError, match="maximum number of streams"):
            await js.add_stream(name="FILLER", subjects=["filler.>"])
        with pytest.raises(asyncio.TimeoutError):
            await js.publish("dockyard.container.started", b"{}", timeout=DENIED_WAIT)
        assert admin.violated("publish", "dockyard.container.started"), admin.errors
    finally:
        await admin.nc.close()


def test_the_credentials_file_is_what_a_service_reads(auth_nats: AuthNats) -> None:
    path = auth_nats.auth.credentials_file("builder")
    data = json.loads(path.read_text())
    assert NatsCredentials.load(path) == NatsCredentials(data["user"], data["password"])
    assert data["user"] == "builder" and len(data["password"]) >= 40


async def test_events_stored_before_authentication_are_still_there_after(tmp_path: Path) -> None:
    settings = StreamSettings()
    store = tmp_path / "nats"
    bare = NatsServer(store_dir=store).start()
    try:
        nc = await connect(bare.url, name="old")
        await ensure_stream(nc, settings)
        for i in range(3):
            await nc.jetstream().publish("dockyard.container.created", b"{}", headers={"Nats-Msg-Id": str(i)})
        await nc.close()
    finally:
        bare.stop()
    auth = write_auth(tmp_path / "nats-auth", settings)
    assert adopt_unauthenticated_store(store)
    assert not adopt_unauthenticated_store(store)  # once
    server = NatsServer(store_dir=store, config_file=auth.config_file).start()
    try:
        nc = await connect(server.url, name="up", credentials=auth.credentials(ADMIN))
        await ensure_stream(nc, settings)
        assert (await nc.jetstream().stream_info(settings.name)).state.messages == 3
        await nc.close()
    finally:
        server.stop()
