"""End to end: ``dockyard.client``, the Python SDK, against a real platform run as the unprivileged
user — sync and async, through the gateway's socket, as a gRPC user's program would.

The test process is root in CI; the library is used as the platform's user (a subprocess under
``setpriv``) where the socket's permissions matter, and directly where they do not.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e_platform import PYTHON, Platform, as_user, busybox_platform, make_workdir

from dockyard.client import (
    AsyncClient,
    BuildOptions,
    BuildProgress,
    Client,
    Mount,
    Port,
    RunOptions,
    exit_code,
)
from dockyard.core.errors import InvalidArgument, NotFound, Reason


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("client-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


def test_run_collects_output_and_exit_codes_as_docker(platform: Platform) -> None:
    with Client(platform.gateway) as client:
        result = client.containers.run(
            RunOptions(
                "busybox", ["sh", "-c", "echo out; echo err >&2; exit 3"], env={"A": "1"}, auto_remove=True
            )
        )
        assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")

        seen: list[bytes] = []
        streamed = client.containers.run(
            RunOptions("busybox", ["sh", "-c", "echo $A"], env={"A": "x"}), stdout=seen.append
        )
        assert streamed.exit_code == 0 and b"".join(seen) == b"x\n" and streamed.stdout == b""
        info = client.containers.get(streamed.id)
        assert info.state == "exited" and info.exit_code == 0 and info.command == ("sh", "-c", "echo $A")
        client.containers.remove(streamed.id)

        # the reasons a caller acts on, never the text
        with pytest.raises(NotFound) as missing_image:
            client.containers.run(RunOptions("nosuchimage"))
        assert missing_image.value.reason == Reason.NO_SUCH_IMAGE and exit_code(missing_image.value) == 125
        with pytest.raises(NotFound) as missing_container:
            client.containers.get("nosuchcontainer")
        assert missing_container.value.reason == Reason.NO_SUCH_CONTAINER
        for command, code in ((["nosuchcommand"], 127), (["/etc/passwd"], 126)):
            with pytest.raises(Exception) as failed:
                client.containers.run(RunOptions("busybox", command, auto_remove=True))
            assert exit_code(failed.value) == code, failed.value
        with pytest.raises(InvalidArgument, match="bad -p"):
            client.containers.run(RunOptions("busybox", ports=["80/quic"]))
        # the grammar takes sctp (docker's); the node says once, clearly, that it cannot forward it
        with pytest.raises(InvalidArgument, match="only tcp and udp ports can be published"):
            client.containers.run(RunOptions("busybox", ports=["80/sctp"]))
        with pytest.raises(InvalidArgument, match="65535"):  # a typed value the grammar never saw
            client.containers.run(RunOptions("busybox", ports=[Port("", 0, 70000, "tcp")]))


def test_detach_logs_ports_networks_volumes(platform: Platform) -> None:
    with Client(platform.gateway) as client:
        volume = client.volumes.create("lib-data", labels={"made-by": "client"})
        assert volume.name == "lib-data" and volume.labels == {"made-by": "client"}
        network = client.networks.create("lib-net")
        assert network.name == "lib-net" and "lib-net" in [n.name for n in client.networks.list()]
        started = client.containers.run(
            RunOptions(
                "busybox",
                ["sh", "-c", "echo one; echo two > /data/f; sleep 60"],
                name="lib-detached",
                volumes=["lib-data:/data"],
                mounts=["type=tmpfs,target=/scratch,tmpfs-size=1m", Mount("bind", "/etc", "/host-etc", True)],
                ports=["127.0.0.1::8080", Port("", 0, 9090, "udp")],
            ),
            detach=True,
        )
        assert started.exit_code is None
        info = client.containers.get("lib-detached")
        assert info.state == "running" and info.id == started.id
        assert {(p.container_port, p.protocol) for p in info.ports} == {(8080, "tcp"), (9090, "udp")}
        assert all(p.host_port > 0 for p in info.ports)  # -p with no host port: a free one was chosen
        # mounts stay structured from the client to the core and back
        assert set(info.mounts) == {
            Mount("volume", "lib-data", "/data"),
            Mount("tmpfs", "", "/scratch", tmpfs_size=1 << 20),
            Mount("bind", "/etc", "/host-etc", read_only=True),
        }
        seen = client.containers.run(
            RunOptions(
                "busybox",
                ["sh", "-c", "df -k /scratch | tail -1; test -f /host-etc/passwd && cat /data/f"],
                mounts=[Mount("tmpfs", "", "/scratch", tmpfs_size=1 << 20)],
                volumes=["lib-data:/data:ro", "/etc:/host-etc:ro"],
                auto_remove=True,
            )
        )
        assert seen.exit_code == 0 and b" 1024 " in seen.stdout and seen.stdout.endswith(b"two\n"), seen
        assert started.id in [c.id for c in client.containers.list()]
        with client.containers.logs(started.id, follow=True) as logs:
            first = next(logs)
        assert first.stream == "stdout" and first.data == b"one\n"
        client.containers.kill(started.id)
        assert client.containers.wait(started.id) == 137
        client.containers.remove(started.id)
        assert "lib-data" in [v.name for v in client.volumes.list()]
        client.volumes.remove("lib-data")
        client.networks.remove("lib-net")
        with pytest.raises(NotFound):
            client.volumes.get("lib-data")


def test_the_async_client_runs_and_follows_events(platform: Platform) -> None:
    async def scenario() -> None:
        async with AsyncClient(platform.gateway) as client:
            since = datetime.now(UTC) - timedelta(seconds=1)
            result = await client.containers.run(RunOptions("busybox", ["echo", "async"], name="lib-async"))
            assert result.exit_code == 0 and result.stdout == b"async\n"
            image = await client.images.get("busybox")
            assert "busybox:latest" in image.tags and image.config["config"]["Cmd"] == ["sh"]
            # a replay that ends: the container's whole life
            until = datetime.now(UTC) + timedelta(seconds=1)
            wanted = (f"container={result.id}",)
            types = [e.type async for e in client.events.stream(since=since, until=until, filters=wanted)]
            assert types[:2] == ["io.dockyard.container.created", "io.dockyard.container.started"], types
            assert "io.dockyard.container.died" in types, types
            # a follow that the consumer leaves: the call is cancelled, nothing hangs
            async for event in client.events.stream(since=since, filters=wanted):
                assert event.type == "io.dockyard.container.created"
                break
            await client.containers.remove(result.id)
            with pytest.raises(NotFound):
                await client.containers.get(result.id)

    asyncio.run(scenario())


def test_build_from_a_directory_with_progress(platform: Platform, workdir: Path) -> None:
    ctx = workdir / "lib-build"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nCOPY msg /msg\nRUN cat /msg\nCMD ["cat", "/msg"]\n')
    (ctx / "msg").write_text("built by the library\n")
    (ctx / ".dockerignore").write_text("secret\n")
    (ctx / "secret").write_text("never sent\n")
    for path in [ctx, *ctx.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    seen: list[BuildProgress] = []
    with Client(platform.gateway) as client:
        image = client.builds.build(BuildOptions(ctx, tags=["lib/built:1"]), on_progress=seen.append)
        assert image.startswith("sha256:") and client.images.get("lib/built:1").id == image
        assert b"built by the library\n" in b"".join(p.log for p in seen)  # the RUN step's output
        run = client.containers.run(RunOptions("lib/built:1", auto_remove=True))
        assert run.stdout == b"built by the library\n"
        (ctx / "Dockerfile").write_text("FROM busybox\nCOPY secret /s\n")
        with pytest.raises(NotFound, match=r"excluded by \.dockerignore"):
            client.builds.build(BuildOptions(ctx))


def test_a_program_of_the_platforms_user_finds_its_socket_without_being_told(platform: Platform) -> None:
    """No host given: the library finds the socket as the CLI does ($DOCKYARD_HOST here, since the
    test platform's socket is in its state dir)."""
    program = textwrap.dedent(
        """
        import json
        from dockyard.client import Client, RunOptions
        with Client() as client:
            r = client.containers.run(RunOptions("busybox", ["id", "-u"], auto_remove=True))
            print(json.dumps({"code": r.exit_code, "out": r.stdout.decode(), "host": str(client.endpoint)}))
        """
    )
    env = {"DOCKYARD_HOST": platform.gateway, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [*as_user(), PYTHON, "-c", program], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"code": 0, "out": "0\n", "host": platform.gateway}


def test_image_verbs_and_archives_stream_through_the_library(platform: Platform, workdir: Path) -> None:
    image = f"{platform.registry_http}/sdk/busybox:1"
    with Client(platform.gateway) as client:
        client.images.tag("busybox", image)
        steps: list[str] = []
        pushed = client.images.push(image, on_progress=lambda p: steps.append(p.status))
        assert pushed.digest.startswith("sha256:") and pushed.size > 0
        assert f"1: digest: {pushed.digest} size: {pushed.size}" in steps
        removal = client.images.remove_detailed(image)
        assert removal.untagged == (image,) and removal.deleted == ()  # busybox still holds it
        history = client.images.history("busybox")
        assert history and history[0].created_by

        client.images.tag("busybox", "sdk-saved:1")
        archive = b"".join(client.images.save(["sdk-saved:1"], format="docker-archive"))
        client.images.remove("sdk-saved:1")
        loaded = client.images.load(archive[i : i + 65536] for i in range(0, len(archive), 65536))
        assert len(loaded) == 1 and "sdk-saved:1" in loaded[0].tags  # with the image's other names
        with pytest.raises(NotFound):
            list(client.images.save(["nosuch-image:1"]))

        rootfs = (workdir / "busybox.tar").read_bytes()
        imported = client.images.import_tar([rootfs], "sdk-imported:1", changes=['CMD ["echo", "hi"]'])
        assert "sdk-imported:1" in imported.tags
        ran = client.containers.run(
            RunOptions("sdk-imported:1", ["sh", "-c", "echo x > /f"], name="sdk-commit")
        )
        assert ran.exit_code == 0
        committed = client.containers.commit("sdk-commit", "sdk-committed:1", changes=['CMD ["cat", "/f"]'])
        client.containers.remove("sdk-commit")
        assert client.containers.run(RunOptions("sdk-committed:1", auto_remove=True)).stdout == b"x\n"
        assert client.images.get("sdk-committed:1").id == committed
        pruned = client.images.prune()
        assert pruned.space_reclaimed >= 0

    async def build() -> list[BuildProgress]:
        import io
        import tarfile

        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            data = b"FROM busybox\nRUN echo built\n"
            info = tarfile.TarInfo("ci/Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        options = BuildOptions(context="", tags=("sdk-built:1",), dockerfile="ci/Dockerfile")
        async with AsyncClient(platform.gateway) as client:
            return [e async for e in client.builds.build_from_tar(options, data, [context.getvalue()])]

    events = asyncio.run(build())
    assert any(e.status == "log" and b"built" in e.log for e in events)
    assert events[-1].status == "result" and events[-1].image_id.startswith("sha256:")
    assert all(e.total == 2 for e in events if e.status == "started")
