"""run/create's --restart and --health-* flags into a ContainerSpec, and how ps and inspect show them."""

from __future__ import annotations

import pytest

from dockyard.api.containers.v1 import containers_pb2 as pb
from dockyard.cli import health_restart, spec
from dockyard.cli.__main__ import build_parser
from dockyard.core.errors import InvalidArgument


def _spec(*flags: str) -> pb.ContainerSpec:
    args = build_parser("run").parse_args(["run", *flags, "busybox", "true"])
    result: pb.ContainerSpec = spec.build_spec(args)
    return result


@pytest.mark.parametrize(
    ("text", "ns"),
    [("0", 0), ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8), ("1.5h", 5400 * 10**9)],
)
def test_go_durations(text: str, ns: int) -> None:
    assert health_restart.parse_duration(text, "--health-interval") == ns


@pytest.mark.parametrize("text", ["5", "5 parsecs", "", "s", "-1s", "1d"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(InvalidArgument, match="--health-timeout"):
        health_restart.parse_duration(text, "--health-timeout")


def test_flags_make_the_spec() -> None:
    s = _spec(
        "--restart", "on-failure:3", "--health-cmd", "curl -f localhost", "--health-interval", "2s",
        "--health-timeout", "1s", "--health-start-period", "1m", "--health-retries", "5",
    )  # fmt: skip
    assert s.restart_policy == "on-failure:3"
    h = s.healthcheck
    assert list(h.test) == ["CMD-SHELL", "curl -f localhost"]
    assert (h.interval.seconds, h.timeout.seconds, h.start_period.seconds, h.retries) == (2, 1, 60, 5)


def test_no_flags_leave_the_image_check_alone_and_no_healthcheck_disables_it() -> None:
    plain = _spec()
    assert not plain.HasField("healthcheck") and plain.restart_policy == ""
    # one field alone is still a check message: the runtime takes the rest from the image
    retries = _spec("--health-retries", "0")
    assert retries.HasField("healthcheck") and not retries.healthcheck.test
    assert list(_spec("--no-healthcheck").healthcheck.test) == ["NONE"]
    with pytest.raises(InvalidArgument, match="--no-healthcheck conflicts with --health-cmd"):
        _spec("--no-healthcheck", "--health-cmd", "true")
    with pytest.raises(InvalidArgument, match="at least 1ms"):
        _spec("--health-interval", "10us")
    with pytest.raises(InvalidArgument, match="negative"):
        _spec("--health-retries", "-1")


def _container(state: int, **kw: object) -> pb.Container:
    return pb.Container(state=state, **kw)  # type: ignore[arg-type]


def test_ps_status_shows_health_and_restarting() -> None:
    running = _container(pb.CONTAINER_STATE_RUNNING)
    assert health_restart.status(running, "Up 5 seconds") == "Up 5 seconds"
    running.health.status = "healthy"
    assert health_restart.status(running, "Up 5 seconds") == "Up 5 seconds (healthy)"
    running.health.status = "starting"
    assert health_restart.status(running, "Up 1 second") == "Up 1 second (health: starting)"
    exited = _container(pb.CONTAINER_STATE_EXITED, exit_code=1, restarting=True)
    exited.finished.FromSeconds(1000)
    assert health_restart.status(exited, "Exited (1)", now=1003) == "Restarting (1) 3 seconds ago"
    exited.restarting = False
    exited.health.status = "unhealthy"  # an exited container shows no health, as docker
    assert health_restart.status(exited, "Exited (1) 3 seconds ago") == "Exited (1) 3 seconds ago"


def test_inspect_shows_zero_counts() -> None:
    from dockyard.cli.inspect import container_dict

    c = _container(pb.CONTAINER_STATE_RUNNING)
    c.health.status = "healthy"
    c.health.log.add(exit_code=0, output="ok\n")
    out = container_dict(c)
    assert out["restartCount"] == 0 and out["restarting"] is False
    assert out["health"]["failingStreak"] == 0 and out["health"]["log"][0]["exitCode"] == 0
