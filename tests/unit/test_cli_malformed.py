"""Malformed values on the command line: one readable line, docker's exit status, nothing sent.

Each case used to end in "unexpected error: ValueError: Value out of range" (a number past its
protobuf field), an OverflowError, a FileNotFoundError, or was accepted (``-v :/x``). The host is
a socket nobody serves: every one of them must be refused before the CLI dials.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.cli.__main__ import main

NOBODY = "unix:///nonexistent/dockyard.sock"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--host", NOBODY, *argv])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert "unexpected error" not in err and "Traceback" not in err, err
    assert "unreachable" not in err and "connect" not in err.lower(), f"dialled: {err}"
    return err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["-m", "99999999999999999999g"], "--memory"),
        (["--memory-swap", "99999999999999999999g"], "--memory-swap"),
        (["--cpus", "1e308"], "--cpus"),
        (["--pids-limit", "99999999999999999999"], "--pids-limit"),
        (["--pids-limit", "-2"], "--pids-limit"),
        (["--cpu-shares", "99999999999999999999"], "--cpu-shares"),
        (["--stop-timeout", "99999999999"], "--stop-timeout"),
        (["--stop-timeout", "soon"], "--stop-timeout"),
        (["--health-cmd", "true", "--health-retries", "99999999999"], "--health-retries"),
        (["-v", ":/x"], "empty section"),
        (["-v", "/a::ro"], "empty section"),
        (["-v", "vol:"], "empty section"),
    ],
)
@pytest.mark.parametrize("verb", ["run", "create"])
def test_bad_run_flags_are_one_line_and_exit_125(
    capsys: pytest.CaptureFixture[str], verb: str, flags: list[str], says: str
) -> None:
    code, err = _run(capsys, verb, *flags, "busybox", "true")
    assert code == 125, err
    assert says in _one_line(err)


def test_update_refuses_a_limit_past_int64(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "update", "--memory", "99999999999999999999g", "c1")
    assert code == 1
    assert "--memory" in _one_line(err)


@pytest.mark.parametrize("when", ["99999999999999999d", "1e300", "99999999999999999999"])
def test_events_out_of_range_times(capsys: pytest.CaptureFixture[str], when: str) -> None:
    code, err = _run(capsys, "events", "--until", when)
    assert code == 1
    assert "bad time" in _one_line(err)


def test_import_and_load_of_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.tar")
    for argv in (["import", missing], ["load", "-i", missing]):
        code, err = _run(capsys, *argv)
        assert code == 1
        assert f"cannot open {missing}: No such file or directory" in _one_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_save_to_an_unwritable_place(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = _run(capsys, "save", "-o", str(locked / "out.tar"), "busybox")
    assert code == 1
    assert "cannot write" in _one_line(err) and "Permission denied" in err
    assert list(locked.iterdir()) == []


def test_save_into_a_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _run(capsys, "save", "-o", str(tmp_path / "no" / "out.tar"), "busybox")
    assert code == 1
    assert "cannot write" in _one_line(err) and "No such file or directory" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["stop", "-t", "99999999999", "c1"], "--time"),
        (["restart", "-t", "99999999999", "c1"], "--time"),
        (["events", "--sequence", "99999999999999999999999"], "--sequence"),
        (["events", "--sequence", "-1"], "--sequence"),
    ],
)
def test_numbers_past_their_field_elsewhere(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, err = _run(capsys, *argv)
    assert code == 1
    assert says in _one_line(err)


def test_a_tail_longer_than_any_log_is_the_whole_log() -> None:
    from dockyard.cli.logs import parse_tail

    assert parse_tail("99999999999") == (1 << 31) - 1 and parse_tail("5") == 5 and parse_tail("all") == 0
