"""Shapes docker-py reads: what its run and logs look at first (LogConfig, Config.Tty), and what
its own integration suite reads (bench/dockerpy_suite.py): inspect's HostConfig and Config as
made, log windows (tail=0, since, until) and a bind over a declared volume."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dockyard.api.containers.v1 import containers_pb2 as pb
from dockyard.client import dockerjson
from dockyard.client.types import ContainerInfo, HealthCheck
from dockyard.core.errors import InvalidArgument
from dockyard.engine import convert

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _container(**overrides: object) -> ContainerInfo:
    fields: dict[str, object] = dict(
        id="abc123",
        name="job",
        image="busybox",
        image_id="sha256:feed",
        state="created",
        exit_code=0,
        pid=0,
        command=("true",),
        ports=(),
        labels={},
        created=None,
        started=None,
        finished=None,
    )
    fields.update(overrides)
    return ContainerInfo(**fields)  # type: ignore[arg-type]


def test_inspect_gives_back_what_the_container_was_made_with() -> None:
    spec = pb.ContainerSpec(
        image="busybox",
        tmpfs=["/tmp1:size=3M", "/run"],
        init=True,
        stop_timeout=25,
        stop_signal="SIGUSR1",
        cap_add=["NET_ADMIN"],
        read_only=True,
        dns=["10.0.0.1"],
    )
    spec.resources.memory = 700 << 20
    spec.resources.cpu_shares = 512
    HealthCheck(test=("CMD-SHELL", "echo ok"), interval_s=1.5, retries=3).to_pb(spec.healthcheck)
    wire = pb.Container(id="abc123", name="job", image="busybox", spec=spec)
    shape = dockerjson.container_inspect(ContainerInfo.from_pb(wire))
    host, config = shape["HostConfig"], shape["Config"]
    assert host["Tmpfs"] == {"/tmp1": "size=3M", "/run": ""}
    assert host["Init"] is True and host["ReadonlyRootfs"] is True
    assert host["Memory"] == 700 << 20 and host["CpuShares"] == 512 and host["MemorySwap"] == 0
    assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] is None and host["Dns"] == ["10.0.0.1"]
    assert config["StopTimeout"] == 25 and config["StopSignal"] == "SIGUSR1"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "echo ok"],
        "Interval": 1_500_000_000,
        "Timeout": 0,
        "StartPeriod": 0,
        "Retries": 3,
    }


def test_inspect_has_dockers_keys_for_what_was_not_asked_for() -> None:
    shape = dockerjson.container_inspect(_container())
    host, config = shape["HostConfig"], shape["Config"]
    for key in (
        "CgroupnsMode",
        "UTSMode",
        "PidMode",
        "Isolation",
        "Runtime",
        "VolumesFrom",
        "MemorySwappiness",
    ):
        assert key in host, key
    assert (
        host["Tmpfs"] is None and host["Init"] is False and host["Memory"] == 0 and host["PidsLimit"] is None
    )
    assert "StopTimeout" not in config and "Healthcheck" not in config


def test_tail_zero_is_no_past_line() -> None:
    window = convert.log_window("0", "", "", NOW)
    assert window.before(datetime(2026, 1, 2, 3, 4, 4, tzinfo=UTC))
    assert not window.before(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert convert.log_window("all", "", "", NOW) == convert.LogWindow(0, None, None)
    assert convert.log_window("", "", "", NOW).tail == 0
    assert convert.log_window("5", "", "", NOW).tail == 5


def test_since_and_until_are_unix_seconds() -> None:
    window = convert.log_window("", "1.5", "100", NOW)
    assert window.since == datetime.fromtimestamp(1.5, UTC)
    assert window.until == datetime.fromtimestamp(100, UTC)
    assert window.before(datetime.fromtimestamp(1, UTC)) and not window.before(datetime.fromtimestamp(2, UTC))
    assert window.past(datetime.fromtimestamp(101, UTC)) and not window.past(datetime.fromtimestamp(99, UTC))
    assert not window.past(None) and not window.before(None)  # a line without a time is kept
    assert convert.log_window("", "0", "0", NOW) == convert.LogWindow(0, None, None)
    for bad in ("yesterday", "-1", "nan", "1e300"):
        with pytest.raises(InvalidArgument):
            convert.log_window("", bad, "", NOW)
    with pytest.raises(InvalidArgument):
        convert.log_window("x", "", "", NOW)


def test_a_bind_takes_the_path_of_a_declared_volume() -> None:
    # docker-py's volumes=[...] with binds={...} sends both for one path; dockerd binds it
    body = {
        "Image": "busybox",
        "Volumes": {"/mnt": {}, "/scratch/": {}, "/keep": {}, "/t": {}, "/m": {}},
        "HostConfig": {
            "Binds": ["/tmp/x:/mnt:ro", "data:/scratch"],
            "Tmpfs": {"/t": ""},
            "Mounts": [{"Type": "bind", "Source": "/tmp/y", "Target": "/m"}],
        },
    }
    options = convert.run_options(body, "")
    assert list(options.volumes) == ["/tmp/x:/mnt:ro", "data:/scratch", "/keep"]


def test_docker_py_run_finds_a_log_driver_it_can_read_back() -> None:
    # containers.run reads HostConfig.LogConfig.Type and streams logs only for json-file/journald
    assert dockerjson.container_inspect(_container())["HostConfig"]["LogConfig"]["Type"] == "json-file"


def test_config_says_whether_the_output_is_a_terminal() -> None:
    # logs() reads Config.Tty to choose between raw and multiplexed framing
    assert dockerjson.container_inspect(_container())["Config"]["Tty"] is False
    shape = dockerjson.container_inspect(
        _container(tty=True, interactive=True, env=("A=1",), entrypoint=("sh", "-c"), workdir="/w")
    )
    config = shape["Config"]
    assert (config["Tty"], config["OpenStdin"], config["Env"]) == (True, True, ["A=1"])
    assert (config["Entrypoint"], config["WorkingDir"]) == (["sh", "-c"], "/w")
    assert dockerjson.container_inspect(_container())["Config"]["Entrypoint"] is None


def test_auto_remove_is_reported_as_made() -> None:
    assert dockerjson.container_inspect(_container(auto_remove=True))["HostConfig"]["AutoRemove"] is True
    assert dockerjson.container_inspect(_container())["HostConfig"]["AutoRemove"] is False
