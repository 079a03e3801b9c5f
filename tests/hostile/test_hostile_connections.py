"""Slow and numerous clients must not take the registry down (bounded: hundreds of loopback sockets,
seconds).

Before the fix, ~1,100 connections that each sent a header line every 10 s exhausted the process's
1,024 descriptors: every legitimate request timed out and the accept loop logged "Too many open
files" thousands of times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from pathlib import Path

from hostile_helpers import Proc, sha, start, stop

NOFILE = 512


async def _drip(port: int, seconds: float, results: list[str]) -> None:
    """A slowloris: a request line, then one header line a second, never the blank line."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        results.append("refused")
        return
    try:
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(1)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            if reader.at_eof():
                raise ConnectionResetError
        results.append("held")
    except OSError:
        results.append("closed")
    finally:
        writer.close()


async def _legit(proc: Proc, seconds: float) -> list[float]:
    """GET /v2/ and a small monolithic push, on fresh connections, twice a second: their latencies."""
    latencies = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        n += 1
        data = f"legit blob {n}".encode()
        started = time.monotonic()
        for request in (
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            f"POST /v2/legit/blobs/uploads/?digest={sha(data)} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data,
        ):
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proc.port), 5)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 201")), answer[:200]
        latencies.append(time.monotonic() - started)
    return latencies


def test_slowloris_does_not_starve_legitimate_clients(tmp_path: Path) -> None:
    # The child gets 512 descriptors and cannot raise them, so 600 slow sockets would exhaust them
    # (the host: 1,024 descriptors, ~1,100 sockets).
    proc = start(tmp_path / "registry", nofile=NOFILE)
    try:
        served = (proc.log_records("http serving") or [{"limit": NOFILE}])[0]

        async def attack() -> tuple[list[str], list[float], int]:
            results: list[str] = []
            slow = [asyncio.create_task(_drip(proc.port, 6, results)) for _ in range(600)]
            legit = asyncio.create_task(_legit(proc, 6))
            await asyncio.sleep(3)
            fds_mid_attack = proc.fds()
            latencies = await legit
            await asyncio.gather(*slow)
            return results, latencies, fds_mid_attack

        results, latencies, fds = asyncio.run(attack())
        assert len(latencies) >= 8 and max(latencies) < 2.0, latencies
        assert served["limit"] < NOFILE // 2  # the cap leaves room for files and one accept burst
        assert fds < NOFILE - 64, fds
        assert results.count("closed") >= 600 - served["limit"], results  # the slow ones made room
        # Nothing ran out of descriptors, so nothing flooded the log.
        assert "Too many open files" not in proc.log()
        assert len(proc.log_records("event loop error")) <= 1
        assert proc.alive()
        assert proc.get(f"/v2/legit/blobs/{sha(b'legit blob 1')}").content == b"legit blob 1"
    finally:
        stop(proc)


def test_incomplete_request_head_and_idle_keepalive_time_out(tmp_path: Path) -> None:
    proc = start(tmp_path / "registry", "--idle-timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as partial:
            partial.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
            started = time.monotonic()
            assert partial.recv(100) == b""  # closed by the server...
            assert time.monotonic() - started < 4  # ...about a second later
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as idle:
            idle.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert idle.recv(100) == b""  # kept alive, then closed once idle past the timeout
            assert time.monotonic() - started < 4
        assert proc.alive()
    finally:
        stop(proc)


def test_busy_connections_are_kept_and_newcomers_told_to_retry(tmp_path: Path) -> None:
    proc = start(tmp_path / "registry", "--max-connections", "3", "--idle-timeout", "30")
    try:
        # Three uploads streaming slowly: busy connections, which are never evicted.
        uploads = []
        for _ in range(3):
            r = proc.request("POST", "/v2/slow/blobs/uploads/")
            assert r.status_code == 202, (r.status_code, r.text)
            loc = r.headers["Location"]
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
            s.sendall(
                f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n"
                "Content-Type: application/octet-stream\r\n\r\n0123456789".encode()
            )
            uploads.append(s)
        time.sleep(0.3)
        # Every slot is busy: a newcomer gets an immediate 503 with Retry-After, not a hang.
        with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as newcomer:
            newcomer.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = newcomer.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After" in answer and b"TOOMANYREQUESTS" in answer
        for s in uploads:  # the busy ones finish normally
            s.sendall(b"abcdefghij")
            assert s.recv(4096).startswith(b"HTTP/1.1 202")
            s.close()
        time.sleep(0.2)
        assert proc.alive()
    finally:
        for s in uploads:
            with contextlib.suppress(OSError):
                s.close()
        stop(proc)


def test_keepalive_downloads_are_busy_until_sent(tmp_path: Path) -> None:
    """A blob being sent counts as busy (not reaped by a 1 s idle timeout while a slow reader takes
    3 s), and several downloads share one keep-alive connection (the soak found a FileResponse
    prepared twice, which dropped the connection after every blob)."""
    proc = start(tmp_path / "registry", "--idle-timeout", "1")
    try:
        blob = os.urandom(8 << 20)
        d = proc.push_blob("big", blob)
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            for _ in range(2):  # the same connection, twice
                s.sendall(f"GET /v2/big/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = s.recv(65536)
                    assert chunk, f"connection closed before a response head: {received[:200]!r}"
                    received += chunk
                head, _, body = received.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                started = time.monotonic()
                while len(body) < len(blob):
                    chunk = s.recv(256 << 10)
                    assert chunk, f"closed after {len(body)} of {len(blob)} bytes"
                    body += chunk
                    if time.monotonic() - started < 3:
                        time.sleep(0.05)  # a slow reader: the server waits on a full socket
                assert hashlib.sha256(body).hexdigest() == d.split(":")[1]
        assert "Unhandled exception" not in proc.log()
    finally:
        stop(proc)
