"""The parts `dockyard up` stands on, with real processes: children that die with their supervisor,
leftovers found by (pid, start time), who holds a port, readiness that tells our service from
another platform's, and size-rotated logs. The whole platform under the same failures: tests/e2e/test_up.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.adapters.nats.server import NatsServer
from dockyard.core.errors import FailedPrecondition
from dockyard.core.service import INSTANCE_ENV
from dockyard.local.logs import RotatingLog, Rotation
from dockyard.local.ports import require_tcp_free, require_unix_free
from dockyard.local.procs import PidRecord, ProcessId, identify, stop_leftovers
from dockyard.local.supervisor import ChildSpec, NatsChild, NotOurs, ServiceChild

PYTHON = sys.executable


def _wait_gone(process: ProcessId, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process.alive()


@pytest.fixture
def sleeper() -> Iterator[list[int]]:
    """Pids to SIGKILL after the test (processes a test expects to be gone, in case they are not)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("death_signal", [True, False], ids=["with-pdeathsig", "without"])
def test_a_child_dies_with_its_supervisor(death_signal: bool, sleeper: list[int]) -> None:
    """A supervisor (a real asyncio process, as `dockyard up` is) killed with SIGKILL takes its
    child along; without the death signal the same child is orphaned — the control case."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from dockyard.local.supervisor import die_with_parent
        async def main():
            prefix = die_with_parent() if {death_signal} else ()
            child = await asyncio.create_subprocess_exec(*prefix, "sleep", "300", start_new_session=True)
            print(child.pid, flush=True)
            await asyncio.sleep(300)
        asyncio.run(main())
    """)
    supervisor = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True)
    assert supervisor.stdout is not None
    child = identify(int(supervisor.stdout.readline()))
    assert child is not None
    sleeper.append(child.pid)
    time.sleep(0.2)  # the child has exec'd sleep: the signal was set before, kept across exec
    supervisor.kill()
    supervisor.wait()
    assert _wait_gone(child, 3) is death_signal


def test_leftovers_are_stopped_by_pid_and_start_time_only(tmp_path: Path, sleeper: list[int]) -> None:
    record = PidRecord(tmp_path / "up.pids")
    left = subprocess.Popen(["sleep", "300"])
    stopped = subprocess.Popen(["sleep", "300"])  # stopped: acts on SIGTERM only once continued
    stranger = subprocess.Popen(["sleep", "300"])  # its pid recorded with another start time: a reused pid
    sleeper.extend([left.pid, stopped.pid, stranger.pid])
    os.kill(stopped.pid, signal.SIGSTOP)
    ids = {
        name: identify(p.pid) for name, p in {"left": left, "stopped": stopped, "stranger": stranger}.items()
    }
    assert all(ids.values())
    stranger_id = ids["stranger"]
    assert stranger_id is not None
    children = {name: pid for name, pid in ids.items() if pid is not None}
    children["stranger"] = ProcessId(stranger_id.pid, stranger_id.start + 1)
    record.write("old-instance", children)

    found = stop_leftovers(record, grace_s=5)

    assert found == {"left": left.pid, "stopped": stopped.pid}
    assert left.wait(5) == -signal.SIGTERM and stopped.wait(5) == -signal.SIGTERM
    assert stranger.poll() is None  # not ours any more: left alone
    assert not record.path.exists()
    assert stop_leftovers(record) == {}  # nothing recorded, nothing done


def test_a_taken_port_is_named_with_its_holder() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(FailedPrecondition) as taken:
            require_tcp_free("127.0.0.1", port, "NATS, --nats-port")
        message = str(taken.value)
        assert message.startswith(f"port {port} (NATS, --nats-port) on 127.0.0.1 is already in use by ")
        assert f"pid {os.getpid()} (" in message and "\n" not in message
        with pytest.raises(FailedPrecondition, match=f"port {port}"):
            require_tcp_free("0.0.0.0", port, "registry HTTP")  # the wildcard conflicts too
    require_tcp_free("127.0.0.1", port, "NATS")  # free again: no error


def test_a_live_socket_is_named_and_a_stale_one_is_free(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        with pytest.raises(FailedPrecondition) as taken:
            require_unix_free(path, "the gateway's")
        assert str(taken.value).startswith(
            f"socket {path} (the gateway's) is already served by pid {os.getpid()}"
        )
    assert path.exists()
    require_unix_free(path, "the gateway's")  # a file nobody serves is stale: the service replaces it


@pytest.fixture
def foreign_builder(tmp_path: Path) -> Iterator[str]:
    """A real builder service run for another platform instance ("theirs"), on a unix socket."""
    address = f"unix:{tmp_path}/sockets/builder.sock"
    env = {**os.environ, INSTANCE_ENV: "theirs"}
    state = str(tmp_path / "builder")
    argv = [PYTHON, "-m", "dockyard.builder", "--grpc-listen", address, "--state-dir", state,
            "--nats-url", "nats://127.0.0.1:1"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "sockets" / "builder.sock").exists():
            assert process.poll() is None and time.monotonic() < deadline, "builder did not start"
            time.sleep(0.05)
        yield address
    finally:
        process.terminate()
        process.wait(10)


async def test_readiness_refuses_a_service_of_another_platform(foreign_builder: str, tmp_path: Path) -> None:
    spec = ChildSpec("builder", foreign_builder, ("sleep", "60"))  # "our" builder never answers
    ours = ServiceChild(spec, tmp_path, "ours", Rotation())
    await ours.start(())
    try:
        began = time.monotonic()
        with pytest.raises(NotOurs, match="another platform"):
            await ours.wait_ready(30)
        assert time.monotonic() - began < 5  # at once, not after the deadline
    finally:
        await ours.stop()
        await ours.close()
    theirs = ServiceChild(spec, tmp_path, "theirs", Rotation())
    await theirs.probe()  # the same service is ready for the platform it belongs to


async def test_readiness_refuses_another_nats_server(tmp_path: Path) -> None:
    other = NatsServer(store_dir=tmp_path / "theirs", name="dockyard-theirs").start()
    try:
        ours = NatsChild(
            NatsServer(store_dir=tmp_path / "ours", port=other.port, name="dockyard-ours"),
            tmp_path,
            "ours",
            Rotation(),
        )
        with pytest.raises(NotOurs, match="dockyard-theirs"):
            await ours.probe()
        same = NatsChild(
            NatsServer(store_dir=tmp_path / "ours", port=other.port, name="dockyard-theirs"),
            tmp_path,
            "theirs",
            Rotation(),
        )
        await same.probe()
    finally:
        other.stop()


def test_logs_rotate_by_size_and_keep_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    rotation = Rotation(max_bytes=1024, files=3)
    log = RotatingLog(path, rotation)
    lines = [f"line {n:04d} {'x' * 40}\n".encode() for n in range(200)]  # ~10 KiB
    for line in lines:
        log.write(line)
    log.write(b"y" * 3000)  # one write larger than the limit is cut, never a file over it
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["svc.log", "svc.log.1", "svc.log.2"]
    assert all((tmp_path / f).stat().st_size <= 1024 for f in files)
    kept = b"".join((tmp_path / f).read_bytes() for f in ("svc.log.2", "svc.log.1", "svc.log"))
    assert (b"".join(lines) + b"y" * 3000).endswith(kept)  # the newest bytes, in order, nothing doubled

    reopened = RotatingLog(path, rotation)  # a restart appends to the current file and counts its size
    reopened.write(b"z" * 100)
    reopened.close()
    assert path.stat().st_size <= 1024

    assert Rotation.from_env({"DOCKYARD_LOG_MAX_BYTES": "2048", "DOCKYARD_LOG_FILES": "5"}) == Rotation(
        2048, 5
    )
    assert Rotation.from_env({}) == Rotation(10 * 1024 * 1024, 3)
    with pytest.raises(ValueError):
        Rotation(max_bytes=10)
    with pytest.raises(ValueError):
        Rotation(files=0)
