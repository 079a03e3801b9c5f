"""The Engine API's shapes for what reaches inside a container, as docker's clients read them."""

from __future__ import annotations

import base64
import json
import tarfile
from datetime import UTC, datetime, timedelta

import pytest

from dockyard.client.types import Change, ContainerInfo, ContainerStats, Limits, TopResult
from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.engine import inside_shapes as shapes
from dockyard.engine.state import Execs

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _stats(**changes: object) -> ContainerStats:
    fields: dict[str, object] = {
        "id": "c" * 64,
        "name": "web",
        "state": "running",
        "read": NOW,
        "cpu_percent": 50.0,
        "cpu_total_ns": 9_000_000_000,
        "memory_usage": 3 * 1024 * 1024,
        "memory_limit": 64 * 1024 * 1024,
        "memory_percent": 4.6875,
        "net_rx_bytes": 100,
        "net_tx_bytes": 200,
        "block_read_bytes": 300,
        "block_write_bytes": 400,
        "pids": 3,
        "pids_limit": 8,
        "from_cgroup": True,
    }
    return ContainerStats(**{**fields, **changes})  # type: ignore[arg-type]


def _docker_cli_cpu_percent(shape: dict[str, object]) -> float:
    """docker's CLI's calculateCPUPercentUnix on the JSON."""
    cpu, pre = shape["cpu_stats"], shape["precpu_stats"]
    assert isinstance(cpu, dict) and isinstance(pre, dict)
    cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    return float(cpu_delta / system_delta * cpu["online_cpus"] * 100) if system_delta > 0 < cpu_delta else 0.0


@pytest.mark.parametrize("percent", [0.0, 12.5, 50.0, 180.0])
def test_stats_give_docker_the_platforms_cpu_percent(percent: float) -> None:
    shape = shapes.stats_json(_stats(cpu_percent=percent), online_cpus=2)
    assert _docker_cli_cpu_percent(shape) == pytest.approx(percent, abs=1e-6)


def test_stats_memory_pids_io_and_names_as_dockerd() -> None:
    shape = shapes.stats_json(_stats(), online_cpus=4)
    assert shape["name"] == "/web" and shape["id"] == "c" * 64
    assert shape["read"] == "2025-06-01T12:00:00Z" and shape["preread"] == "2025-06-01T11:59:59Z"
    assert shape["memory_stats"] == {"usage": 3 * 1024 * 1024, "limit": 64 * 1024 * 1024, "stats": {}}
    assert shape["pids_stats"] == {"current": 3, "limit": 8}
    ops = {e["op"]: e["value"] for e in shape["blkio_stats"]["io_service_bytes_recursive"]}
    assert ops == {"read": 300, "write": 400}
    networks = shape["networks"]
    assert sum(n["rx_bytes"] for n in networks.values()) == 100
    assert sum(n["tx_bytes"] for n in networks.values()) == 200
    assert shape["cpu_stats"]["online_cpus"] == 4
    assert shape["cpu_stats"]["cpu_usage"]["total_usage"] == 9_000_000_000
    json.dumps(shape)  # what goes on the wire


def test_stats_without_a_pids_limit_leave_it_out() -> None:
    assert shapes.stats_json(_stats(pids_limit=0), online_cpus=1)["pids_stats"] == {"current": 3}


def test_exec_request_from_dockers_body() -> None:
    body = {
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": False,
        "Tty": True,
        "Cmd": ["sh", "-c", "echo $A"],
        "Env": ["A=1", "B=x=y", "UNSET"],
        "WorkingDir": "/etc",
        "User": "www-data",
        "Privileged": True,
        "ConsoleSize": [24, 80],
    }
    request = shapes.exec_request(body, "cid")
    assert (request.stdin, request.stdout, request.stderr) == (True, True, False)
    options = request.options
    assert options.container == "cid" and list(options.command) == ["sh", "-c", "echo $A"]
    assert dict(options.env) == {"A": "1", "B": "x=y"}
    assert (options.workdir, options.user, options.tty, options.interactive) == (
        "/etc",
        "www-data",
        True,
        True,
    )
    assert (options.rows, options.cols) == (24, 80)
    assert list(shapes.exec_request({"Cmd": "true"}, "cid").options.command) == ["true"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "No exec command specified"),
        ({"Cmd": []}, "No exec command specified"),
        ({"Cmd": [1]}, "Cmd must be a list of strings"),
        ({"Cmd": ["x"], "Env": "A=1"}, "Env must be a list"),
        ({"Cmd": ["x"], "ConsoleSize": [1]}, "ConsoleSize"),
        ([], "JSON object"),
    ],
)
def test_a_bad_exec_body_is_invalid(body: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        shapes.exec_request(body, "cid")


def test_exec_inspect_has_no_exit_code_until_the_end() -> None:
    request = shapes.exec_request({"Cmd": ["sh", "-c", "exit 3"], "AttachStdout": True}, "cid")
    running = shapes.exec_inspect("e1", request, running=True, exit_code=None)
    assert (running["ID"], running["ContainerID"], running["Running"], running["ExitCode"]) == (
        "e1",
        "cid",
        True,
        None,
    )
    assert running["ProcessConfig"]["entrypoint"] == "sh"
    assert running["ProcessConfig"]["arguments"] == ["-c", "exit 3"]
    assert shapes.exec_inspect("e1", request, running=False, exit_code=3)["ExitCode"] == 3


def test_go_file_modes() -> None:
    assert shapes.go_file_mode(0o40755) == (1 << 31) | 0o755  # what Go's FileMode.IsDir reads
    assert shapes.go_file_mode(0o100644) == 0o644
    assert shapes.go_file_mode(0o120777) == (1 << 27) | 0o777
    assert shapes.go_file_mode(0o41777) == (1 << 31) | (1 << 20) | 0o777  # sticky /tmp
    assert shapes.go_file_mode(0o104755) == (1 << 23) | 0o755  # setuid
    assert shapes.go_file_mode(0o20666) == (1 << 26) | (1 << 21) | 0o666  # a char device


def test_path_stat_header_is_base64_json() -> None:
    stat = shapes.path_stat("etc", 4096, 0o40755, NOW)
    decoded = json.loads(base64.b64decode(shapes.path_stat_header(stat), validate=True))
    assert decoded == {
        "name": "etc",
        "size": 4096,
        "mode": (1 << 31) | 0o755,
        "mtime": "2025-06-01T12:00:00Z",
        "linkTarget": "",
    }
    odd = shapes.path_stat("why???", 1, 0o100644, NOW)  # "???" is "Pz8/" in standard base64, not "Pz8_"
    header = shapes.path_stat_header(odd)
    assert "/" in header and json.loads(base64.b64decode(header, validate=True))["name"] == "why???"


def test_the_stat_of_a_copys_first_member() -> None:
    directory = tarfile.TarInfo("tree")
    directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, NOW.timestamp()
    assert shapes.tar_path_stat(directory)["mode"] == (1 << 31) | 0o755
    assert shapes.tar_path_stat(directory)["name"] == "tree"
    link = tarfile.TarInfo("link")
    link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/srv/a", 0o777
    stat = shapes.tar_path_stat(link)
    assert stat["mode"] == (1 << 27) | 0o777 and stat["linkTarget"] == "/srv/a"
    file = tarfile.TarInfo("note.txt")
    file.size, file.mode = 7, 0o644
    assert (shapes.tar_path_stat(file)["size"], shapes.tar_path_stat(file)["mode"]) == (7, 0o644)


def test_changes_and_top_shapes() -> None:
    changes = [
        Change("C", "/etc", b"/etc"),
        Change("A", "/etc/x", b"/etc/x"),
        Change("D", "/bin/vi", b"/bin/vi"),
    ]
    assert shapes.changes_json(changes) == [
        {"Path": "/etc", "Kind": 0},
        {"Path": "/etc/x", "Kind": 1},
        {"Path": "/bin/vi", "Kind": 2},
    ]
    top = TopResult(("UID", "PID", "CMD"), (("root", "10", "sleep 60"),))
    assert shapes.top_json(top) == {
        "Titles": ["UID", "PID", "CMD"],
        "Processes": [["root", "10", "sleep 60"]],
    }


@pytest.mark.parametrize(
    ("value", "cutoff"),
    [
        ("10m", NOW - timedelta(minutes=10)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("1.5s", NOW - timedelta(seconds=1.5)),
        ("1748779200", datetime(2025, 6, 1, 12, 0, tzinfo=UTC)),
        ("2025-05-01T00:00:00Z", datetime(2025, 5, 1, tzinfo=UTC)),
        ("2025-05-01", datetime(2025, 5, 1, tzinfo=UTC)),
    ],
)
def test_until(value: str, cutoff: datetime) -> None:
    assert shapes.until_cutoff(value, NOW) == cutoff


def test_a_bad_until_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="until"):
        shapes.until_cutoff("soon", NOW)


def _container(name: str, state: str, labels: dict[str, str], age: timedelta) -> ContainerInfo:
    created = NOW - age
    return ContainerInfo(name, name, "busybox", "sha256:x", state, 0, 0, (), (), labels, created, None, None)


def test_prune_filters() -> None:
    old_kept = _container("old-kept", "exited", {"keep": "yes"}, timedelta(hours=2))
    old = _container("old", "exited", {}, timedelta(hours=2))
    new = _container("new", "created", {"keep": "no"}, timedelta(minutes=1))
    running = _container("running", "running", {}, timedelta(hours=2))
    everyone = [old_kept, old, new, running]

    def names(filters: tuple[str, ...]) -> list[str]:
        wanted = shapes.prune_filter(filters, NOW)
        return [c.name for c in everyone if wanted(c)]

    assert names(()) == ["old-kept", "old", "new"]  # never a running one
    assert names(("until=1h",)) == ["old-kept", "old"]
    assert names(("label=keep",)) == ["old-kept", "new"]
    assert names(("label=keep=yes",)) == ["old-kept"]
    assert names(("label!=keep",)) == ["old"]
    assert names(("label!=keep=yes", "until=1h")) == ["old"]
    with pytest.raises(InvalidArgument, match="invalid filter 'status'"):
        shapes.prune_filter(("status=exited",), NOW)


def test_update_resources() -> None:
    assert shapes.update_resources({"Memory": 64 << 20, "MemorySwap": 0, "CpuShares": 0}) == Limits(
        memory=64 << 20
    )
    assert shapes.update_resources({"NanoCpus": 500_000_000}).nano_cpus == 500_000_000
    assert shapes.update_resources({"CpuQuota": 50_000, "CpuPeriod": 100_000}).nano_cpus == 500_000_000
    assert shapes.update_resources({"CpuQuota": 25_000}).nano_cpus == 250_000_000  # the default period
    assert shapes.update_resources({"PidsLimit": 0}).pids_limit == -1  # docker's 0: unlimited
    assert shapes.update_resources({"PidsLimit": 20}).pids_limit == 20
    assert shapes.update_resources({}) == Limits()
    for bad in ({"Memory": "1g"}, {"PidsLimit": True}, {"NanoCpus": 1, "CpuQuota": 1}, []):
        with pytest.raises(InvalidArgument):
            shapes.update_resources(bad)
    assert shapes.restart_policy_name({"RestartPolicy": {"Name": ""}}) == ""
    assert shapes.restart_policy_name({"RestartPolicy": {"Name": "always"}}) == "always"


def test_exec_instances_are_found_forgotten_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    execs = Execs()
    request = shapes.exec_request({"Cmd": ["true"]}, "cid")
    first = execs.add(request)
    assert execs.get(first.id) is first and len(first.id) == 64
    with pytest.raises(NotFound, match="No such exec instance: nope"):
        execs.get("nope")
    first.state = "running"
    first.finish(0)
    first.finished = (first.finished or 0) - Execs.KEEP_S - 1  # ended long ago
    execs.add(request)
    with pytest.raises(NotFound):
        execs.get(first.id)

    monkeypatch.setattr(Execs, "MOST", 3)
    crowded = Execs()
    made = [crowded.add(request) for _ in range(3)]
    made[0].finish(0)
    newest = crowded.add(request)  # room is made by forgetting the oldest that ended
    with pytest.raises(NotFound):
        crowded.get(made[0].id)
    for record in (*made[1:], newest):
        record.state = "running"
    with pytest.raises(FailedPrecondition, match="too many exec instances"):
        crowded.add(request)
