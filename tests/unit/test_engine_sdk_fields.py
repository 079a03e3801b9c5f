"""The inspect fields docker-py and testcontainers read before they do anything else."""

from __future__ import annotations

from dockyard.client import dockerjson
from dockyard.client.types import ContainerInfo


def _container(**overrides: object) -> ContainerInfo:
    fields: dict[str, object] = dict(
        id="abc123",
        name="job",
        image="busybox",
        image_id="sha256:feed",
        state="created",
        exit_code=0,
        pid=0,
        command=("echo", "hi"),
        ports=(),
        labels={},
        created=None,
        started=None,
        finished=None,
    )
    fields.update(overrides)
    return ContainerInfo(**fields)  # type: ignore[arg-type]


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
