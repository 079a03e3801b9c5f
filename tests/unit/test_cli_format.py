"""``--format`` Go templates through the real CLI entry point, without a platform: the gRPC stubs
are replaced by fakes that answer with real API messages."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.api.containers.v1 import containers_pb2_grpc
from dockyard.api.events.v1 import events_pb2 as epb
from dockyard.api.images.v1 import images_pb2 as ipb
from dockyard.api.images.v1 import images_pb2_grpc
from dockyard.api.networks.v1 import networks_pb2 as npb
from dockyard.api.networks.v1 import networks_pb2_grpc
from dockyard.api.volumes.v1 import volumes_pb2 as vpb
from dockyard.api.volumes.v1 import volumes_pb2_grpc
from dockyard.cli import client
from dockyard.cli.__main__ import main
from dockyard.cli.events import _render


def _container(name: str, state: int, labels: dict[str, str]) -> cpb.Container:
    c = cpb.Container(
        id=f"sha256:{name * 16}"[:71],
        name=name,
        image="busybox:latest",
        state=state,
        exit_code=0 if state == 2 else 3,
        pid=4242 if state == 2 else 0,
        command=["sleep", "1000"],
        spec=cpb.ContainerSpec(image="busybox:latest", labels=labels, network="backend"),
    )
    c.created.seconds = 1_700_000_000
    c.started.seconds = 1_700_000_001
    return c


CONTAINERS = [_container("web", 2, {"tier": "front"}), _container("db", 4, {})]


class _FakeContainers:
    def __init__(self, _channel: Any) -> None:
        pass

    def List(self, request: Any, **_: Any) -> cpb.ListContainersResponse:
        return cpb.ListContainersResponse(containers=CONTAINERS)

    def Inspect(self, request: Any, **_: Any) -> cpb.Container:
        for c in CONTAINERS:
            if request.id == c.name:
                return c
        import grpc

        class NotFound(grpc.RpcError):
            def code(self) -> grpc.StatusCode:
                return grpc.StatusCode.NOT_FOUND

            def details(self) -> str:
                return f"no such container: {request.id}"

        raise NotFound()


class _FakeImages:
    def __init__(self, _channel: Any) -> None:
        pass

    def List(self, request: Any, **_: Any) -> ipb.ListImagesResponse:
        image = ipb.Image(
            id="sha256:" + "ab" * 32, repo_tags=["busybox:latest", "busybox:1.36"], size=4_300_000
        )
        image.created.seconds = 1_700_000_000
        return ipb.ListImagesResponse(images=[image])


class _FakeNetworks:
    def __init__(self, _channel: Any) -> None:
        pass

    def List(self, request: Any, **_: Any) -> npb.ListNetworksResponse:
        return npb.ListNetworksResponse(
            networks=[npb.Network(id="f" * 64, name="backend", driver="bridge", subnet="10.89.0.0/24")]
        )


class _FakeVolumes:
    def __init__(self, _channel: Any) -> None:
        pass

    def List(self, request: Any, **_: Any) -> vpb.ListVolumesResponse:
        return vpb.ListVolumesResponse(
            volumes=[
                vpb.Volume(name="data", driver="local", scope="local", labels={"k": "v"}, used_by=["web"])
            ]
        )


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    @contextlib.contextmanager
    def no_channel(_host: Any) -> Iterator[None]:
        yield None

    monkeypatch.setattr(client, "channel", no_channel)
    monkeypatch.setattr(containers_pb2_grpc, "ContainersStub", _FakeContainers)
    monkeypatch.setattr(images_pb2_grpc, "ImagesStub", _FakeImages)
    monkeypatch.setattr(networks_pb2_grpc, "NetworksStub", _FakeNetworks)
    monkeypatch.setattr(volumes_pb2_grpc, "VolumesStub", _FakeVolumes)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["-H", "unix:///nonexistent/dockyard.sock", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_ps_names_and_a_table_with_docker_headers(cli: Any) -> None:
    assert cli("ps", "-a", "--format", "{{.Names}}") == (0, "web\ndb\n", "")
    code, out, _ = cli("ps", "-a", "--format", r"table {{.ID}}\t{{.Status}}\t{{.Names}}")
    lines = out.splitlines()
    assert code == 0 and lines[0].split("   ")[0] == "CONTAINER ID" and lines[0].endswith("NAMES")
    assert lines[0].index("STATUS") == lines[1].index("Up ") == lines[2].index("Exited (3)")
    assert lines[1].startswith("webwebwebweb   ") and lines[1].endswith("web")


def test_ps_fields_as_docker_names_them(cli: Any) -> None:
    code, out, _ = cli(
        "ps",
        "-a",
        "--format",
        '{{.Image}}|{{.State}}|{{.Label "tier"}}|{{.Labels}}|{{.Networks}}|{{.Command}}',
    )
    assert code == 0
    assert out.splitlines() == [
        'busybox:latest|running|front|tier=front|backend|"sleep 1000"',
        'busybox:latest|exited|||backend|"sleep 1000"',
    ]
    code, out, _ = cli("ps", "--format", "{{json .}}")
    row = json.loads(out.splitlines()[0])
    assert row["Names"] == "web" and "Label" not in row and {"ID", "RunningFor", "Mounts"} <= set(row)


def test_ps_keeps_its_json_and_table_keywords(cli: Any) -> None:
    code, out, _ = cli("ps", "--format", "json")
    assert code == 0 and json.loads(out.splitlines()[0])["Names"] == "web"
    code, out, _ = cli("ps")
    assert out.startswith("CONTAINER ID") and "NAMES" in out.splitlines()[0]


def test_a_bad_template_is_one_line_before_the_platform_is_asked(cli: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(containers_pb2_grpc, "ContainersStub", None)  # asking would crash
    code, out, err = cli("ps", "--format", "{{.Names")
    assert (code, out) == (1, "") and err == "dockyard: template: :1: unclosed action\n"
    monkeypatch.setattr(containers_pb2_grpc, "ContainersStub", _FakeContainers)
    code, out, err = cli("ps", "--format", "{{.Nope}}")
    assert code == 1 and err == (
        'dockyard: template: :1:2: executing "" at <.Nope>: '
        "can't evaluate field Nope in type *formatter.ContainerContext\n"
    )


def test_images_table_of_repository_and_tag(cli: Any) -> None:
    code, out, _ = cli("images", "--format", r"table {{.Repository}}\t{{.Tag}}")
    assert code == 0 and out == "REPOSITORY   TAG\nbusybox      latest\nbusybox      1.36\n"
    code, out, _ = cli("images", "--format", "{{.ID}}: {{.Repository}}:{{.Tag}} {{.Size}}")
    assert out.splitlines()[0] == "abababababab: busybox:latest 4.3MB"


def test_inspect_f_sees_dockers_state_and_the_printed_object(cli: Any) -> None:
    assert cli("inspect", "-f", "{{.State.Status}}", "web") == (0, "running\n", "")
    code, out, _ = cli(
        "inspect", "--format", "{{.State.Pid}} {{.State.Running}} {{.Name}} {{.name}}", "web", "db"
    )
    assert out == "4242 true web web\n0 false db db\n"
    code, out, _ = cli("container", "inspect", "-f", "{{json .State.ExitCode}}", "db")
    assert (code, out) == (0, "3\n")
    code, out, err = cli("inspect", "-f", "{{.State.Nope}}", "web")
    assert code == 1 and 'map has no entry for key "Nope"' in err and err.count("\n") == 1


def test_network_and_volume_ls_templates(cli: Any) -> None:
    code, out, _ = cli("network", "ls", "--format", r"table {{.ID}}\t{{.Name}}\t{{.Driver}}")
    assert code == 0 and out.splitlines() == [
        "NETWORK ID     NAME      DRIVER",
        "ffffffffffff   backend   bridge",
    ]
    assert cli("network", "ls", "--format", "{{.Name}} {{.Subnet}}")[1] == "backend 10.89.0.0/24\n"
    code, out, _ = cli("volume", "ls", "--format", r"table {{.Name}}\t{{.Driver}}\t{{.Label `k`}}")
    assert code == 0 and out.splitlines() == ["VOLUME NAME   DRIVER    LABEL", "data          local     v"]
    assert cli("volume", "ls", "--format", "{{.Name}}:{{.Links}}")[1] == "data:1\n"


def test_version_format_needs_no_platform(cli: Any) -> None:
    from dockyard.core.service import VERSION

    assert cli("version", "--format", "{{.Client.Version}}") == (0, f"{VERSION}\n", "")
    assert cli("version", "--format", "{{.Client.Platform.Name}}")[1] == "Dockyard\n"


def test_events_template_over_dockers_fields() -> None:
    event = epb.Event(
        type="io.dockyard.container.started",
        subject="web",
        source="/dockyard/runtime/node1",
        labels={"image": "busybox:latest", "name": "web"},
        sequence=7,
        data_json='{"exitCode": 0}',
    )
    event.time.seconds = 1_700_000_000
    line = _render(
        event, "{{.Type}} {{.Action}} {{.Actor.ID}} {{.From}} {{.Actor.Attributes.name}} {{.Time}}"
    )
    assert line == "container start web busybox:latest web 1700000000"
    assert json.loads(_render(event, "{{json .}}"))["Status"] == "start"
    assert _render(event, "{{.DockyardAction}}") == "started"
    event.type = "io.dockyard.image.removed"
    assert _render(event, "{{.Type}} {{.Action}}") == "image delete"
    assert _render(event, "json") == event.cloudevent_json
