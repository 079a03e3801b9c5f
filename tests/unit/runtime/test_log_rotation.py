"""Bounded container logs: docker's --log-opt, rotation with conmon's reopen, reading across the
rotated files (backlog, --tail, --follow through a rotation), and coalesced entries."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.runtime.logs import LogOptions, follow_log, log_files, rotate


def line(n: int, stream: str = "stdout") -> bytes:
    return f"2026-12-07T05:00:{n % 60:02d}.000000001+00:00 {stream} F line {n}\n".encode()


def conmon_reopens(log: Path) -> None:
    """What conmon does on "2 0 0": a new empty file renamed over the log path."""
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_bytes(b"")
    os.rename(tmp, log)


@pytest.fixture
def ctl(tmp_path: Path):
    path = tmp_path / "ctl"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # conmon's end
    yield path, reader
    os.close(reader)


def read(log: Path, tail: int = 0) -> bytes:
    async def collect() -> bytes:
        done = asyncio.Event()
        done.set()
        entries = [e async for e in follow_log(log, done, follow=False, since=None, tail=tail)]
        return b"".join(d for _, d, _ in entries)

    return asyncio.run(collect())


def test_log_options_as_docker_spells_them() -> None:
    assert LogOptions.parse({}) == LogOptions(20 << 20, 5)
    assert LogOptions.parse({"max-size": "10m", "max-file": "3"}) == LogOptions(10 << 20, 3)
    assert LogOptions.parse({"max-size": "512k"}).max_size == 512 << 10
    assert LogOptions.parse({"max-size": "-1"}).max_size == 0
    for bad in ({"max-size": "lots"}, {"max-size": "99999999999999999999g"}, {"max-size": "1"},
                {"max-file": "0"}, {"max-file": "x"}, {"mode": "non-blocking"}):  # fmt: skip
        with pytest.raises(InvalidArgument):
            LogOptions.parse(bad)


def test_rotation_keeps_max_file_files_and_loses_no_line(tmp_path: Path, ctl: tuple[Path, int]) -> None:
    fifo, conmon = ctl
    log = tmp_path / "ctr.log"
    n = 0
    for _ in range(5):  # five rotations, keeping 3 files
        log.write_bytes(b"".join(line(n + i) for i in range(10)))
        n += 10
        assert rotate(log, fifo, keep=3)
        assert os.read(conmon, 64) == b"2 0 0\n"
        assert not rotate(log, fifo, keep=3), "a rotation whose reopen is pending is not repeated"
        conmon_reopens(log)
    log.write_bytes(line(n))
    assert [p.name for p in log_files(log)] == ["ctr.log.2", "ctr.log.1", "ctr.log"]
    # the newest 2 rotated files (lines 30..49) and the current one (line 50), in order
    assert read(log) == b"".join(f"line {i}\n".encode() for i in range(30, 51))
    assert read(log, tail=12) == b"".join(f"line {i}\n".encode() for i in range(39, 51))


def test_rotation_while_conmon_is_gone_keeps_the_content(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_bytes(line(1))
    fifo = tmp_path / "ctl"
    os.mkfifo(fifo)  # nobody reads it: conmon exited
    assert rotate(log, fifo, keep=2)
    assert not log.exists() and read(log) == b"line 1\n"


def conmon_writes_through_a_rotation(log: Path, fifo: Path) -> None:
    with open(log, "ab") as f:  # conmon writes, then the runtime rotates, conmon keeps writing
        f.write(line(1))
        f.flush()
        rotate(log, fifo, keep=3)
        f.write(line(2))  # before conmon reopened: lands in ctr.log.1
    conmon_reopens(log)
    with open(log, "ab") as f:
        f.write(line(3))


def test_follow_goes_on_through_a_rotation(tmp_path: Path, ctl: tuple[Path, int]) -> None:
    fifo, _ = ctl
    log = tmp_path / "ctr.log"
    log.write_bytes(line(0))

    async def scenario() -> bytes:
        exited = asyncio.Event()
        got: list[bytes] = []

        async def follow() -> None:
            async for _, data, _ in follow_log(log, exited, follow=True, since=None, tail=0, coalesce=True):
                got.append(data)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        await asyncio.to_thread(conmon_writes_through_a_rotation, log, fifo)
        await asyncio.sleep(0.3)
        exited.set()
        await asyncio.wait_for(task, 5)
        return b"".join(got)

    assert asyncio.run(scenario()) == b"line 0\nline 1\nline 2\nline 3\n"


def test_coalesced_entries_keep_streams_apart_and_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_bytes(line(0) * 12000 + line(1, "stderr") + line(2) * 3)

    async def collect() -> list[tuple[str, bytes, str]]:
        done = asyncio.Event()
        done.set()
        return [e async for e in follow_log(log, done, follow=False, since=None, tail=0, coalesce=True)]

    entries = asyncio.run(collect())
    assert [s for s, _, _ in entries] == ["stdout", "stdout", "stderr", "stdout"]
    assert all(len(d) <= (64 << 10) + 64 for _, d, _ in entries)
    assert entries[2][1] == b"line 1\n" and entries[3][1] == b"line 2\n" * 3
    assert b"".join(d for s, d, _ in entries[:2]) == b"line 0\n" * 12000


def test_the_sliced_fast_path_reads_what_the_line_parser_reads(tmp_path: Path) -> None:
    """Blocks of one stream are parsed by slicing at conmon's fixed offsets; partial lines, the
    other stream, a malformed line and other time widths must come out as the line parser has them."""
    ts = "2026-12-07T05:00:00.123456789+00:00"
    records = []
    for i in range(30000):
        records.append(f"{ts} stdout F out {i}\n")
        if i % 97 == 0:
            records.append(f"{ts} stdout P part-{i}-\n")
        if i % 5000 == 4999:
            records.append(f"{ts} stderr F err {i}\n")
        if i == 12345:
            records.append("garbage\n")
            records.append(f"2026-12-07T05:00:00.1Z stdout F short time {i}\n")
    log = tmp_path / "ctr.log"
    log.write_text("".join(records))

    async def collect(coalesce: bool) -> dict[str, bytes]:
        done = asyncio.Event()
        done.set()
        out = {"stdout": b"", "stderr": b""}
        async for stream, data, _ in follow_log(
            log, done, follow=False, since=None, tail=0, coalesce=coalesce
        ):
            out[stream] += data
        return out

    fast, slow = asyncio.run(collect(True)), asyncio.run(collect(False))
    assert fast == slow
    assert b"part-97-out 98\n" in fast["stdout"] and b"short time 12345\n" in fast["stdout"]
    assert fast["stderr"].count(b"\n") == 6
