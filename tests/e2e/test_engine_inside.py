"""End to end: the docker CLI reaching inside containers through `dockyard up`'s Engine API.

exec (exit codes, env, workdir, user, stdin, a TTY), top, stats, diff, cp both ways, export,
prune, rename, update, pause: the real docker CLI as the platform's user, its exit codes and
output as docker's.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_cli import DOCKER, Docker
from e2e_platform import USER, Platform, as_user, busybox_fixtures

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")


workdir, platform = busybox_fixtures("engine-inside")


@pytest.fixture(scope="module")
def docker(platform: Platform, workdir: Path) -> Docker:
    return Docker(platform, workdir)


@pytest.fixture(scope="module")
def box(docker: Docker) -> Iterator[str]:
    """A running container the tests reach into."""
    docker.ok("run", "-d", "--name", "box", "busybox", "sleep", "600")
    yield "box"
    docker("rm", "-f", "box")


def _user_dir(workdir: Path, name: str) -> Path:
    """A directory the platform's user (who runs the docker CLI) owns."""
    path = workdir / name
    path.mkdir()
    if os.geteuid() == 0:
        shutil.chown(path, USER)
    return path


def test_exec_output_exit_code_env_workdir_and_user(docker: Docker, box: str) -> None:
    done = docker("exec", box, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert docker.ok("exec", "-e", "WHO=docker", box, "sh", "-c", "echo $WHO") == "docker\n"
    assert docker.ok("exec", "-w", "/etc", box, "pwd") == "/etc\n"
    assert docker.ok("exec", "-u", "www-data", box, "id", "-un") == "www-data\n"
    assert docker.ok("exec", "-u", "1234:5678", box, "sh", "-c", "echo $(id -u):$(id -g)") == "1234:5678\n"
    missing = docker("exec", box, "nosuchcommand")
    assert missing.returncode == 127, (missing.returncode, missing.stdout, missing.stderr)
    stopped = docker("exec", "nosuchcontainer", "true")
    assert stopped.returncode == 1 and "No such container" in stopped.stderr, stopped.stderr


def test_exec_with_stdin(docker: Docker, box: str) -> None:
    assert (
        docker.ok("exec", "-i", box, "sh", "-c", "tr a-z A-Z; echo done", input="shout\n") == "SHOUT\ndone\n"
    )


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_exec_with_a_tty(docker: Docker, box: str) -> None:
    """docker's -t needs a terminal: script(1) gives it one; -e returns docker's exit code. The
    container's terminal turns "\n" into "\r\n" (script's own may add one more "\r")."""
    command = shlex.join([str(DOCKER), "exec", "-t", box, "sh", "-c", "tty; echo in-a-tty; exit 4"])
    done = subprocess.run(
        [*as_user(USER), "script", "-qec", command, "/dev/null"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env=docker.env,
    )
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert b"/dev/pts/" in done.stdout and b"in-a-tty\r" in done.stdout, done.stdout


def test_top_and_stats(docker: Docker, box: str) -> None:
    top = docker.ok("top", box)
    assert top.splitlines()[0].split()[:2] == ["UID", "PID"], top
    assert "sleep 600" in top, top
    row = docker.ok(
        "stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}", box
    ).strip()
    name, cpu, memory, pids = row.split("|")
    assert name == box and cpu.endswith("%"), row
    usage, _, limit = memory.partition(" / ")
    assert usage.endswith("B") and limit.endswith("B") and not limit.startswith("0B"), row
    assert int(pids) >= 1, row


def test_diff(docker: Docker, box: str) -> None:
    docker.ok("exec", box, "sh", "-c", "echo new > /tmp/added; rm /bin/vi")
    lines = docker.ok("diff", box).splitlines()
    assert "A /tmp/added" in lines and "D /bin/vi" in lines and "C /tmp" in lines, lines


def test_cp_both_ways(docker: Docker, box: str, workdir: Path) -> None:
    local = _user_dir(workdir, "cp")
    (local / "note.txt").write_text("a file\n")
    (local / "tree" / "sub").mkdir(parents=True)
    (local / "tree" / "sub" / "deep.txt").write_text("deep\n")
    for path in (
        local / "note.txt",
        local / "tree",
        local / "tree" / "sub",
        local / "tree" / "sub" / "deep.txt",
    ):
        if os.geteuid() == 0:
            shutil.chown(path, USER)
    docker.ok("cp", str(local / "note.txt"), f"{box}:/tmp/")
    docker.ok("cp", str(local / "tree"), f"{box}:/tmp/tree")
    assert docker.ok("exec", box, "cat", "/tmp/note.txt", "/tmp/tree/sub/deep.txt") == "a file\ndeep\n"
    docker.ok(
        "exec",
        box,
        "sh",
        "-c",
        "mkdir -p /srv/out/inner && echo made > /srv/out/inner/f && echo one > /srv/one",
    )
    back = _user_dir(workdir, "back")
    docker.ok("cp", f"{box}:/srv/out", str(back / "out"))
    docker.ok("cp", f"{box}:/srv/one", str(back / "copied-one"))
    assert (back / "out" / "inner" / "f").read_text() == "made\n"
    assert (back / "copied-one").read_text() == "one\n"
    missing = docker("cp", f"{box}:/no/such/path", str(back))
    assert missing.returncode == 1, missing.stderr
    assert "Could not find the file /no/such/path in container box" in missing.stderr, missing.stderr
    into_missing = docker("cp", str(local / "note.txt"), f"{box}:/no/such/dir/")
    assert into_missing.returncode == 1, into_missing.stderr


def test_cp_a_tar_through_stdout(docker: Docker, box: str) -> None:
    done = subprocess.run(
        [*as_user(USER), str(DOCKER), "cp", f"{box}:/etc/passwd", "-"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env=docker.env,
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        assert tar.getnames() == ["passwd"]


def test_export_is_the_filesystem(docker: Docker, box: str, workdir: Path) -> None:
    done = subprocess.run(
        f"{shlex.join([*as_user(USER), str(DOCKER), 'export', box])} | tar -t",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=docker.env,
    )
    assert done.returncode == 0, done.stderr
    names = {name.rstrip("/") for name in done.stdout.splitlines()}
    assert {"bin/sh", "etc/passwd", "tmp/added"} <= names, sorted(names)[:20]


def test_rename_update_pause_and_prune(docker: Docker) -> None:
    docker.ok("run", "-d", "--name", "first", "busybox", "sleep", "600")
    try:
        docker.ok("rename", "first", "second")
        assert docker.ok("inspect", "-f", "{{.Name}}", "second").strip() == "/second"
        docker.ok("run", "-d", "--name", "taken", "busybox", "true")
        clash = docker("rename", "second", "taken")
        assert clash.returncode == 1 and "taken" in clash.stderr, clash.stderr

        assert docker.ok("update", "--memory", "64m", "second").strip() == "second"
        limit = docker.ok("stats", "--no-stream", "--format", "{{.MemUsage}}", "second").strip()
        assert limit.endswith("/ 64MiB"), limit

        docker.ok("pause", "second")
        assert docker.ok("inspect", "-f", "{{.State.Status}}", "second").strip() == "paused"
        again = docker("pause", "second")
        assert again.returncode == 1 and "already paused" in again.stderr, again.stderr
        docker.ok("unpause", "second")
        assert docker.ok("inspect", "-f", "{{.State.Status}}", "second").strip() == "running"
        not_paused = docker("unpause", "second")
        assert not_paused.returncode == 1 and "not paused" in not_paused.stderr, not_paused.stderr

        docker.ok("run", "--name", "labelled", "--label", "keep=yes", "busybox", "true")
        docker.ok("container", "prune", "-f", "--filter", "label!=keep")
        remaining = docker.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert "taken" not in remaining and "labelled" in remaining and "second" in remaining, remaining
        pruned = docker.ok("container", "prune", "-f")
        assert "Total reclaimed space" in pruned, pruned
        remaining = docker.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert "labelled" not in remaining and "second" in remaining, remaining  # running: kept
    finally:
        docker("rm", "-f", "first", "second", "taken", "labelled")


def test_stats_stream_one_sample_a_second(docker: Docker, box: str) -> None:
    """``stream=true`` (the default): a JSON document a line, about one a second, until we leave."""
    connection = socket.socket(socket.AF_UNIX)
    connection.settimeout(30)
    connection.connect(str(docker.socket))
    try:
        connection.sendall(f"GET /v1.44/containers/{box}/stats HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
        received = b""
        started = time.monotonic()
        while received.count(b'"cpu_stats"') < 3:
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
        elapsed = time.monotonic() - started
    finally:
        connection.close()
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert b'"name": "/box"' in received
    assert elapsed >= 2.0, elapsed  # three samples: the first after a second, then one a second
