"""Docker's Engine API shapes made from the client library's types, without a platform."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest

from dockyard.client import dockerjson
from dockyard.client.grammar import Mount, Port
from dockyard.client.types import ContainerInfo, HealthCheck, ImageInfo, Limits
from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.engine import convert

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _container(**overrides: object) -> ContainerInfo:
    fields: dict[str, object] = dict(
        id="abc123",
        name="web",
        image="busybox",
        image_id="sha256:feed",
        state="running",
        exit_code=0,
        pid=42,
        command=("httpd", "-f", "-p", "80"),
        ports=(Port("127.0.0.1", 32768, 80, "tcp"),),
        labels={"a": "b"},
        created=NOW - timedelta(minutes=5),
        started=NOW - timedelta(minutes=3),
        finished=None,
        mounts=(Mount("bind", "/srv", "/data", True),),
    )
    fields.update(overrides)
    return ContainerInfo(**fields)  # type: ignore[arg-type]


def test_inspect_has_the_state_and_ports_docker_reads() -> None:
    shape = dockerjson.container_inspect(_container())
    assert shape["Name"] == "/web"
    assert shape["Path"] == "httpd" and shape["Args"] == ["-f", "-p", "80"]
    assert shape["State"]["Status"] == "running" and shape["State"]["Running"] is True
    assert shape["State"]["Pid"] == 42
    assert shape["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert shape["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}
    assert shape["HostConfig"]["Binds"] == ["/srv:/data:ro"]
    assert shape["Mounts"][0]["RW"] is False


def test_summary_status_lines() -> None:
    assert dockerjson.container_summary(_container(), NOW)["Status"] == "Up 3 minutes"
    exited = _container(state="exited", exit_code=3, finished=NOW - timedelta(seconds=2))
    summary = dockerjson.container_summary(exited, NOW)
    assert summary["Status"] == "Exited (3) 2 seconds ago"
    assert summary["Names"] == ["/web"] and summary["Command"] == "httpd -f -p 80"
    assert summary["Ports"] == [{"PrivatePort": 80, "Type": "tcp", "IP": "127.0.0.1", "PublicPort": 32768}]


def test_unpublished_port_maps_to_none() -> None:
    assert dockerjson.port_map((Port("", 0, 8080, "udp"),)) == {"8080/udp": None}


def test_image_shapes() -> None:
    image = ImageInfo(
        id="sha256:feed",
        tags=("busybox:latest",),
        digests=("busybox@sha256:aa",),
        size=1000,
        created=NOW,
        labels={},
        config={"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}},
    )
    assert dockerjson.image_summary(image)["RepoTags"] == ["busybox:latest"]
    assert dockerjson.image_summary(image)["Created"] == int(NOW.timestamp())
    inspected = dockerjson.image_inspect(image)
    assert inspected["Config"]["Cmd"] == ["sh"] and inspected["Os"] == "linux"


def test_create_body_to_run_options() -> None:
    body = {
        "Image": "busybox",
        "Cmd": ["httpd", "-f"],
        "Env": ["A=1", "B="],
        "Labels": {"x": "y"},
        "Tty": True,
        "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "Binds": ["/srv:/data:ro"],
            "AutoRemove": True,
            "NetworkMode": "default",
        },
    }
    options = convert.run_options(body, "web")
    assert options.name == "web" and list(options.command) == ["httpd", "-f"]
    assert dict(options.env) == {"A": "1", "B": ""}
    assert list(options.ports) == [Port("127.0.0.1", 0, 80, "tcp")]
    assert options.auto_remove and options.tty and options.network == ""
    assert options.entrypoint is None and options.pull == "never"


@pytest.mark.parametrize(
    "body",
    [[], {}, {"Image": ""}, {"Image": "x", "Cmd": [1]}, {"Image": "x", "Env": ["=v"]},
     {"Image": "x", "HostConfig": {"PortBindings": {"http": []}}}],
)  # fmt: skip
def test_bad_create_bodies_are_bad_parameters(body: object) -> None:
    with pytest.raises(InvalidArgument):
        convert.run_options(body, "")


def test_frames_and_versions_and_statuses() -> None:
    framed = convert.frame("stderr", b"hi\n")
    assert framed[:8] == struct.pack(">BxxxL", 2, 3) and framed[8:] == b"hi\n"
    assert convert.supported_version("1.24") and convert.supported_version("1.51")
    assert not convert.supported_version("1.12") and not convert.supported_version("2.0")
    assert convert.status_for(NotFound("x")) == 404
    assert convert.status_for(InvalidArgument("x")) == 400
    assert convert.tail_count("all") == 0 and convert.tail_count("5") == 5


def test_compose_create_fields_health_limits_tmpfs() -> None:
    body = {
        "Image": "busybox",
        "Healthcheck": {"Test": ["CMD-SHELL", "test -f /ready"], "Interval": 500_000_000, "Retries": 20},
        "HostConfig": {
            "Memory": 64 << 20,
            "CpuQuota": 50_000,
            "PidsLimit": 100,
            "Tmpfs": {"/run": "size=1m"},
        },
    }
    options = convert.run_options(body, "db")
    assert options.healthcheck == HealthCheck(("CMD-SHELL", "test -f /ready"), interval_s=0.5, retries=20)
    assert options.limits == Limits(memory=64 << 20, nano_cpus=500_000_000, pids_limit=100)
    assert list(options.tmpfs) == ["/run:size=1m"]
    spec = options.to_pb()
    assert list(spec.healthcheck.test) == ["CMD-SHELL", "test -f /ready"]
    assert spec.healthcheck.interval.ToNanoseconds() == 500_000_000 and spec.healthcheck.retries == 20
    assert not spec.healthcheck.HasField("timeout")  # unset: the image's
    assert spec.resources.memory == 64 << 20 and spec.resources.nano_cpus == 500_000_000
    assert not spec.resources.HasField("memory_swap")
    plain = convert.run_options({"Image": "busybox", "HostConfig": {"Memory": 0}}, "")
    assert plain.healthcheck is None and plain.limits is None
    assert not plain.to_pb().HasField("healthcheck") and not plain.to_pb().HasField("resources")


@pytest.mark.parametrize(
    "body",
    [{"Image": "x", "Healthcheck": {"Interval": -1}}, {"Image": "x", "Healthcheck": "CMD true"},
     {"Image": "x", "HostConfig": {"Memory": "64m"}}, {"Image": "x", "HostConfig": {"Tmpfs": ["/run"]}}],
)  # fmt: skip
def test_bad_health_and_limits_are_bad_parameters(body: object) -> None:
    with pytest.raises(InvalidArgument):
        convert.run_options(body, "")


def test_inspect_and_ps_show_health_and_how_it_was_made() -> None:
    info = _container(
        health="starting", restart_policy="on-failure:3", restart_count=2, env=("A=1",), auto_remove=True
    )
    shape = dockerjson.container_inspect(info)
    assert shape["State"]["Health"]["Status"] == "starting"
    assert shape["RestartCount"] == 2 and shape["Config"]["Env"] == ["A=1"]
    assert shape["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert shape["HostConfig"]["AutoRemove"] is True
    assert "Health" not in dockerjson.container_inspect(_container())["State"]
    assert dockerjson.container_summary(info, NOW)["Status"] == "Up 3 minutes (health: starting)"
    assert (
        dockerjson.container_summary(_container(health="healthy"), NOW)["Status"] == "Up 3 minutes (healthy)"
    )


def test_privileges_and_init_from_host_config() -> None:
    host = {"CapAdd": ["NET_ADMIN"], "CapDrop": ["ALL"], "Privileged": True, "Init": True}
    spec = convert.run_options({"Image": "busybox", "HostConfig": host}, "").to_pb()
    assert list(spec.cap_add) == ["NET_ADMIN"] and list(spec.cap_drop) == ["ALL"]
    assert spec.privileged and spec.init
    with pytest.raises(InvalidArgument):
        convert.run_options({"Image": "busybox", "HostConfig": {"CapAdd": [1]}}, "")


def test_a_paused_container_still_runs_as_docker_says() -> None:
    paused = _container(state="paused")
    state = dockerjson.container_inspect(paused)["State"]
    assert state["Running"] is True and state["Paused"] is True and state["Status"] == "paused"
    assert dockerjson.container_summary(paused, NOW)["Status"] == "Up 3 minutes (Paused)"


def test_log_config_options_go_through_and_other_drivers_are_refused() -> None:
    host = {"LogConfig": {"Type": "json-file", "Config": {"max-file": "3"}}}
    assert convert.run_options({"Image": "busybox", "HostConfig": host}, "").to_pb().log_opts == {
        "max-file": "3"
    }
    for driver in ("syslog", "none"):
        with pytest.raises(InvalidArgument, match="logging driver"):
            convert.run_options({"Image": "x", "HostConfig": {"LogConfig": {"Type": driver}}}, "")
    shape = dockerjson.container_inspect(_container(log_opts={"max-size": "1m"}))
    assert shape["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
