from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from dockyard.cli.events import parse_time
from dockyard.cli.registry import split_reference
from dockyard.core.errors import InvalidArgument

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - timedelta(minutes=10)),
        ("2h", NOW - timedelta(hours=2)),
        ("0s", NOW),
        ("1700000000", datetime.fromtimestamp(1700000000, UTC)),
        ("2026-11-22T05:00:00Z", datetime(2026, 11, 22, 5, 0, tzinfo=UTC)),
        ("2026-11-22T05:00:00", datetime(2026, 11, 22, 5, 0, tzinfo=UTC)),
    ],
)
def test_times_like_docker_events(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


def test_a_bad_time_names_the_accepted_forms() -> None:
    with pytest.raises(InvalidArgument, match="RFC 3339"):
        parse_time("yesterday", now=NOW)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("app", ("app", "latest")),
        ("team/app:1.0", ("team/app", "1.0")),
        ("localhost:5000/app", ("localhost:5000/app", "latest")),
        ("app@sha256:ab", ("app", "sha256:ab")),
    ],
)
def test_references(ref: str, expected: tuple[str, str]) -> None:
    assert split_reference(ref) == expected


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard.cli", *args], capture_output=True, text=True, timeout=30
    )


def test_help_lists_the_commands_without_importing_grpc() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from dockyard.cli.__main__ import main; main(['--help'])"],
        capture_output=True,
        text=True,
    )
    assert "events" in out.stdout and "doctor" in out.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom dockyard.cli.__main__ import build_parser\nbuild_parser('events')\n"
            "print('grpc' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False"


def test_user_mistakes_are_one_line_and_no_traceback() -> None:
    result = _cli("events", "--since", "soon")
    assert result.returncode == 1
    assert result.stderr.startswith("dockyard: bad time 'soon': use RFC 3339")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
