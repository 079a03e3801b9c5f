"""Pure pieces of the container core: conmon's log format, runc's error lines, the persisted record."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from dockyard.runtime.logs import follow_log, parse_line, parse_time
from dockyard.runtime.monitor import _runtime_error
from dockyard.runtime.mounts import Kind, MountSpec
from dockyard.runtime.network import PortForward
from dockyard.runtime.records import ContainerConfig, ContainerRecord, State
from dockyard.runtime.runflags import PortMapping

LOG = (
    b"2026-11-22T17:40:00.000000001+00:00 stdout F first line\n"
    b"2026-11-22T17:40:01.500000000+00:00 stderr P part one, \n"
    b"2026-11-22T17:40:01.600000000+00:00 stderr F part two\n"
    b"2026-11-22T17:40:02.000000000Z stdout F \n"
    b"garbage\n"
    b"2026-11-22T17:40:03.000000000+00:00 stdout F unfinished"  # no newline yet: not read
)


def test_parse_line_full_partial_and_empty() -> None:
    assert parse_line(b"2026-11-22T17:40:00.1+00:00 stdout F hello\n") == (
        "stdout",
        b"hello\n",
        "2026-11-22T17:40:00.1+00:00",
    )
    assert parse_line(b"2026-11-22T17:40:00.1+00:00 stderr P hel\n")[:2] == ("stderr", b"hel")
    assert parse_line(b"2026-11-22T17:40:00.1+00:00 stdout F\n")[:2] == ("stdout", b"\n")
    assert parse_line(b"garbage\n") is None


def test_parse_time_keeps_microseconds_and_zone() -> None:
    assert parse_time("2026-11-22T17:40:01.500000123+00:00") == datetime(2026, 11, 22, 17, 40, 1, 500000, UTC)
    assert parse_time("2026-11-22T17:40:02.000000000Z") == datetime(2026, 11, 22, 17, 40, 2, tzinfo=UTC)
    assert parse_time("yesterday") is None


def _read(path: Path, **kw: object) -> list[tuple[str, bytes, str]]:
    async def collect() -> list[tuple[str, bytes, str]]:
        done = asyncio.Event()
        done.set()
        return [e async for e in follow_log(path, done, **kw)]  # type: ignore[arg-type]

    return asyncio.run(collect())


def test_follow_log_since_tail_and_unfinished_lines(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_bytes(LOG)
    everything = _read(log, follow=False, since=None, tail=0)
    assert b"".join(d for _, d, _ in everything) == b"first line\npart one, part two\n\n"
    assert [d for _, d, _ in _read(log, follow=False, since=None, tail=1)] == [b"\n"]
    since = datetime(2026, 11, 22, 17, 40, 1, 550000, UTC)
    assert [d for _, d, _ in _read(log, follow=False, since=since, tail=0)] == [b"part two\n", b"\n"]
    assert _read(tmp_path / "absent.log", follow=True, since=None, tail=0) == []


def test_runtime_error_takes_runcs_message() -> None:
    line = 'time="2026" level=error msg="runc create failed: exec: \\"nope\\": executable file not found"\n'
    assert _runtime_error("noise\n" + line) == 'runc create failed: exec: "nope": executable file not found'
    assert _runtime_error("") == "the OCI runtime failed without a message"


def test_record_round_trips_through_json() -> None:
    record = ContainerRecord(
        id="ab" * 32,
        name="web",
        config=ContainerConfig(
            image="busybox", command=["httpd"], ports=[PortMapping(80, 8080)], labels={"a": "b"}
        ),
        image_id="sha256:" + "cd" * 32,
        created="2026-11-22T17:40:00.000000+00:00",
        state=State.EXITED,
        exit_code=137,
        ports=[PortForward("0.0.0.0", 8080, 80)],
        oom_killed=True,
    )
    again = ContainerRecord.from_json(record.to_json())
    assert again == record and again.state is State.EXITED and again.short_id == "ab" * 6


def test_a_record_from_before_structured_ports_still_loads() -> None:
    """Ports travel structured from the client to the core now; records on disk from before hold
    "-p" strings, and a restarted runtime must still read them."""
    record = ContainerRecord(
        id="ef" * 32,
        name="old",
        config=ContainerConfig(image="busybox", ports=[PortMapping(80, 8080, "tcp", "127.0.0.1")]),
        image_id="sha256:" + "cd" * 32,
        created="2026-11-22T17:40:00.000000+00:00",
        state=State.CREATED,
    )
    doc = json.loads(record.to_json())
    assert doc["config"]["ports"] == [
        {"container_port": 80, "host_port": 8080, "protocol": "tcp", "host_ip": "127.0.0.1"}
    ]
    doc["config"]["ports"] = ["127.0.0.1:8080:80/tcp"]
    assert ContainerRecord.from_json(json.dumps(doc)) == record


def test_mounts_are_kept_structured_and_old_v_strings_still_load() -> None:
    """Mounts travel structured from the client to the core; records on disk from before hold
    them as "-v" strings under "binds", and a restarted runtime must still read them."""
    mounts = [
        MountSpec(Kind.BIND, "/srv/site", "/usr/share/nginx/html", read_only=True),
        MountSpec(Kind.VOLUME, "db", "/var/lib/db", no_copy=True),
        MountSpec(Kind.TMPFS, "", "/run", tmpfs_size=1 << 20, tmpfs_mode=0o1770),
    ]
    record = ContainerRecord(
        id="ef" * 32,
        name="new",
        config=ContainerConfig(image="busybox", mounts=mounts),
        image_id="sha256:" + "cd" * 32,
        created="2026-11-22T17:40:00.000000+00:00",
    )
    doc = json.loads(record.to_json())
    assert doc["config"]["mounts"][2] == {
        "kind": "tmpfs",
        "source": "",
        "target": "/run",
        "read_only": False,
        "no_copy": False,
        "tmpfs_size": 1 << 20,
        "tmpfs_mode": 0o1770,
    }
    again = ContainerRecord.from_json(record.to_json())
    assert again == record and again.config.mounts[1].kind is Kind.VOLUME
    del doc["config"]["mounts"]
    doc["config"]["binds"] = ["/srv/site:/usr/share/nginx/html:ro", "db:/var/lib/db:nocopy"]
    assert ContainerRecord.from_json(json.dumps(doc)).config.mounts == mounts[:2]
