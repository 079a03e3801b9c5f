"""Health checks and restart policies: docker's rules as pure functions, the probe over a process, the
API conversion. The real thing (runc exec in a container, restarts through conmon) is in
tests/e2e/test_health_restart.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.core.errors import InvalidArgument
from dockyard.runtime import health, restart
from dockyard.runtime.health_convert import fill_container_pb, healthcheck_from_pb
from dockyard.runtime.records import ContainerConfig, ContainerRecord

MS = 1_000_000
S = 1_000_000_000

# --- restart policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "retries", "canonical"),
    [
        ("", "no", 0, "no"),
        ("no", "no", 0, "no"),
        ("always", "always", 0, "always"),
        ("unless-stopped", "unless-stopped", 0, "unless-stopped"),
        ("on-failure", "on-failure", 0, "on-failure"),
        ("on-failure:3", "on-failure", 3, "on-failure:3"),
        ("on-failure:0", "on-failure", 0, "on-failure"),
    ],
)
def test_restart_policy_parses_docker_forms(text: str, name: str, retries: int, canonical: str) -> None:
    policy = restart.RestartPolicy.parse(text)
    assert (policy.name, policy.max_retries, str(policy)) == (name, retries, canonical)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sometimes", "use no, always, unless-stopped or on-failure"),
        ("always:2", "on-failure only"),
        ("on-failure:x", "must be a number"),
        ("on-failure:-1", "must be a number"),
    ],
)
def test_restart_policy_refuses_nonsense_in_one_line(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        restart.RestartPolicy.parse(text)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_should_restart_is_dockers_rule() -> None:
    parse = restart.RestartPolicy.parse
    assert not parse("no").should_restart(1, 0, False)
    assert parse("always").should_restart(0, 99, False)
    assert parse("unless-stopped").should_restart(0, 0, False)
    assert not parse("on-failure").should_restart(0, 0, False)  # success is not a failure
    assert parse("on-failure").should_restart(1, 1000, False)  # no limit
    assert parse("on-failure:3").should_restart(1, 2, False)
    assert not parse("on-failure:3").should_restart(1, 3, False)  # three made: done
    for policy in ("always", "unless-stopped", "on-failure"):
        assert not parse(policy).should_restart(1, 0, True)  # stopped by the user


def test_backoff_doubles_from_100ms_to_a_minute_and_resets_after_10s() -> None:
    delays, delay = [], 0.0
    for _ in range(12):
        delay = restart.next_delay(delay, ran_s=0.5)
        delays.append(delay)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert restart.next_delay(25.6, ran_s=10.0) == 0.1


def test_rm_with_a_restart_policy_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="--rm"):
        restart.validate(ContainerConfig(image="x", auto_remove=True, restart_policy="always"))
    assert restart.validate(ContainerConfig(image="x", auto_remove=True)).restart_policy == "no"
    assert restart.validate(ContainerConfig(image="x", restart_policy="on-failure:0")).restart_policy == (
        "on-failure"
    )


# --- health checks -------------------------------------------------------------------------------

IMAGE_CHECK = {"Test": ["CMD", "true"], "Interval": 5 * S, "Timeout": 2 * S, "Retries": 4}


def test_user_flags_override_the_image_check_field_by_field() -> None:
    assert health.merge({}, IMAGE_CHECK) == IMAGE_CHECK
    assert health.merge({"Retries": 9}, IMAGE_CHECK) == {**IMAGE_CHECK, "Retries": 9}
    user = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 300 * MS}
    assert health.merge(user, IMAGE_CHECK) == {**IMAGE_CHECK, **user}
    assert health.merge({"Test": ["NONE"]}, IMAGE_CHECK)["Test"] == ["NONE"]
    assert health.merge(user, None) == user
    # an image's malformed check is dropped, not fatal
    assert health.merge({}, {"Test": ["BOGUS"]}) == {}


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ({"Test": ["BOGUS", "x"]}, "unknown test type"),
        ({"Test": ["CMD-SHELL"]}, "one non-empty command"),
        ({"Test": ["CMD"]}, "needs a command"),
        ({"Interval": -1}, "≥ 0"),
        ({"Timeout": 10}, "at least 1ms"),
        ({"Retries": -2}, "Retries"),
    ],
)
def test_bad_checks_are_refused(check: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        health.validate(check)


def test_argv_of_each_test_form() -> None:
    assert health.argv({"Test": ["CMD", "wget", "-q", "x"]}) == ["wget", "-q", "x"]
    assert health.argv({"Test": ["CMD-SHELL", "exit 1"]}) == ["/bin/sh", "-c", "exit 1"]
    assert health.argv({"Test": ["NONE"]}) is None
    assert health.argv({}) is None


def _result(code: int, start: str = "2026-11-22T10:00:10+00:00") -> dict[str, object]:
    return {"Start": start, "End": start, "ExitCode": code, "Output": ""}


STARTED = "2026-11-22T10:00:00+00:00"


def test_status_moves_as_dockers_does() -> None:
    h: dict[str, object] = {}
    h = health.apply_result(h, _result(1), started=STARTED, start_period_ns=0, retries=2)
    assert (h["Status"], h["FailingStreak"]) == ("starting", 1)
    h = health.apply_result(h, _result(1), started=STARTED, start_period_ns=0, retries=2)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 2)
    h = health.apply_result(h, _result(0), started=STARTED, start_period_ns=0, retries=2)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 0)
    h = health.apply_result(h, _result(-1), started=STARTED, start_period_ns=0, retries=2)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 1)  # one failure: still healthy


def test_failures_in_the_start_period_do_not_count_until_a_success() -> None:
    in_period = _result(1, "2026-11-22T10:00:05+00:00")
    h = health.apply_result({}, in_period, started=STARTED, start_period_ns=30 * S, retries=1)
    assert (h["Status"], h["FailingStreak"]) == ("starting", 0)
    after = _result(1, "2026-11-22T10:00:31+00:00")
    h = health.apply_result(h, after, started=STARTED, start_period_ns=30 * S, retries=1)
    assert h["Status"] == "unhealthy"
    # once healthy, the start period no longer shelters a failure
    healthy = health.apply_result({}, _result(0), started=STARTED, start_period_ns=30 * S, retries=1)
    h = health.apply_result(healthy, in_period, started=STARTED, start_period_ns=30 * S, retries=1)
    assert h["Status"] == "unhealthy"


def test_the_log_keeps_the_last_five() -> None:
    h: dict[str, object] = {}
    for code in range(8):
        h = health.apply_result(h, _result(code), started=STARTED, start_period_ns=0, retries=100)
    assert [e["ExitCode"] for e in h["Log"]] == [3, 4, 5, 6, 7]  # type: ignore[attr-defined]


FAKE_RUNC = """#!/bin/sh
# stands in for `runc exec --user U --pid-file F CID CMD...`: runs CMD, records its pid in F
shift 3; pidfile=$2; shift 3
"$@" &
echo $! > "$pidfile"
wait $!
"""


@pytest.fixture
def fake_runc(tmp_path: Path) -> list[str]:
    script = tmp_path / "runc"
    script.write_text(FAKE_RUNC)
    script.chmod(0o755)
    return [str(script)]


def _probe(runc: list[str], command: list[str], tmp_path: Path, timeout_s: float = 10.0) -> tuple[int, str]:
    return asyncio.run(
        health.probe(runc, "cid", command, user="0:0", timeout_s=timeout_s, pid_file=tmp_path / "health.pid")
    )


def test_probe_reports_exit_code_and_output_capped(fake_runc: list[str], tmp_path: Path) -> None:
    assert _probe(fake_runc, ["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path) == (3, "out\nerr\n")
    code, output = _probe(fake_runc, ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"], tmp_path)
    assert code == 0 and output == "x" * health.MAX_OUTPUT


def test_probe_past_its_timeout_is_killed(fake_runc: list[str], tmp_path: Path) -> None:
    code, output = _probe(fake_runc, ["sleep", "1000"], tmp_path, timeout_s=0.3)
    assert code == -1 and output == "Health check exceeded timeout (300ms)"
    pid = int((tmp_path / "health.pid").read_text())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the checked process outlived its timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_duration_text_is_gos() -> None:
    assert health._duration_text(30 * S) == "30s"
    assert health._duration_text(90 * S) == "1m30s"
    assert health._duration_text(3600 * S) == "1h0m0s"
    assert health._duration_text(300 * MS) == "300ms"


# --- the API edge --------------------------------------------------------------------------------


def test_spec_and_container_messages_round_trip() -> None:
    spec = cpb.ContainerSpec(image="x", restart_policy="on-failure:2")
    spec.healthcheck.test.extend(["CMD-SHELL", "true"])
    spec.healthcheck.interval.FromMilliseconds(250)
    spec.healthcheck.retries = 5
    check = healthcheck_from_pb(spec)
    assert check == {"Test": ["CMD-SHELL", "true"], "Interval": 250 * MS, "Retries": 5}
    assert healthcheck_from_pb(cpb.ContainerSpec(image="x")) == {}
    negative = cpb.ContainerSpec(image="x")
    negative.healthcheck.timeout.FromSeconds(-1)
    with pytest.raises(InvalidArgument, match="negative"):
        healthcheck_from_pb(negative)

    record = ContainerRecord(
        id="c" * 64,
        name="n",
        config=ContainerConfig(image="x", restart_policy="on-failure:2", healthcheck=check),
        image_id="sha256:0",
        created="2026-11-22T10:00:00+00:00",
        restart_count=2,
        restarting=True,
        health={
            "Status": "unhealthy",
            "FailingStreak": 3,
            "Log": [{"Start": STARTED, "End": STARTED, "ExitCode": 1, "Output": "no\n"}],
        },
    )
    msg = cpb.Container()
    fill_container_pb(record, msg)
    assert msg.spec.restart_policy == "on-failure:2" and list(msg.spec.healthcheck.test) == check["Test"]
    assert msg.spec.healthcheck.interval.ToMilliseconds() == 250
    assert (msg.restart_count, msg.restarting) == (2, True)
    assert (msg.health.status, msg.health.failing_streak) == ("unhealthy", 3)
    assert msg.health.log[0].output == "no\n" and msg.health.log[0].start.seconds > 0
    # the record keeps all of it across a restart of the service
    again = ContainerRecord.from_json(record.to_json())
    assert again == record
