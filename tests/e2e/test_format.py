"""End to end: docker's ``--format`` Go templates against a real platform, as the unprivileged user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import Platform, busybox_platform, make_workdir


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    workdir = make_workdir(Path(tmp_path_factory.mktemp("format-e2e", numbered=True)))
    with busybox_platform(workdir) as p:
        p.ok("run", "-d", "--name", "fmtweb", "--label", "tier=front", "busybox", "sleep", "300")
        assert p.cli("run", "--name", "fmtdone", "busybox", "sh", "-c", "exit 3").returncode == 3
        yield p


def test_ps_names_and_a_docker_table(platform: Platform) -> None:
    assert platform.ok("ps", "--format", "{{.Names}}") == "fmtweb\n"
    assert sorted(platform.ok("ps", "-a", "--format", "{{.Names}}").split()) == ["fmtdone", "fmtweb"]
    lines = platform.ok(
        "ps", "-a", "--format", r"table {{.Names}}\t{{.State}}\t{{.Label `tier`}}"
    ).splitlines()
    assert lines[0].split() == ["NAMES", "STATE", "LABEL"]
    assert sorted(line.split() for line in lines[1:]) == [
        ["fmtdone", "exited"],
        ["fmtweb", "running", "front"],
    ]
    assert json.loads(platform.ok("ps", "--format", "{{json .}}"))["Names"] == "fmtweb"


def test_inspect_f_state_status(platform: Platform) -> None:
    assert platform.ok("inspect", "-f", "{{.State.Status}}", "fmtweb") == "running\n"
    assert platform.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "fmtdone") == "exited 3\n"
    done = platform.cli("inspect", "-f", "{{.State.Nope}}", "fmtweb")
    assert done.returncode == 1 and 'map has no entry for key "Nope"' in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_images_table_repository_and_tag(platform: Platform) -> None:
    out = platform.ok("images", "--format", r"table {{.Repository}}\t{{.Tag}}")
    assert out.splitlines()[0].split() == ["REPOSITORY", "TAG"]
    assert ["busybox", "latest"] in [line.split() for line in out.splitlines()[1:]]


def test_version_info_network_volume(platform: Platform) -> None:
    server = platform.ok("version", "--format", "{{.Client.Version}} {{.Server.Version}}").split()
    assert len(server) == 2 and server[0] == server[1]
    assert platform.ok("info", "--format", "{{.ServerVersion}}").strip() == server[0]
    platform.ok("volume", "create", "fmtvol")
    assert "fmtvol" in platform.ok("volume", "ls", "--format", "{{.Name}}").split()
    assert platform.ok("volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "fmtvol") == "fmtvol local\n"
    platform.ok("network", "create", "fmtnet")
    assert "fmtnet bridge" in platform.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()


def test_stats_and_events_templates(platform: Platform) -> None:
    out = platform.ok("stats", "--no-stream", "--format", r"table {{.Name}}\t{{.PIDs}}", "fmtweb", timeout=90)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "PIDS"] and lines[1].split()[0] == "fmtweb"
    events = platform.ok(
        "events",
        "--since",
        "10m",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    )
    fields = [line.split() for line in events.splitlines()]
    assert fields and all(f[0] == "container" and len(f[2]) == 64 for f in fields), events
    assert {"create", "start", "die"} <= {f[1] for f in fields}  # docker's words
