"""End to end: health checks and restart policies through the CLI, as the unprivileged user.

One platform for the module; the last test stops and starts it again (`dockyard up` restarted) on the
same state. Waits poll for a state with a generous deadline: they prove that something happens, never
how fast. Deterministic service deaths: the runtime is frozen (SIGSTOP) while a container's init is
killed from outside and conmon records its exit, and only then killed with -9 — so the new service,
not the old one, is the one that sees the exit.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_platform import Platform, busybox_rootfs_tar, clean_stop, make_workdir, start, stop

from dockyard.adapters.nats.server import free_port

DEADLINE_S = 90.0


@dataclass
class Node:
    """The module's platform; replaced when a test restarts `dockyard up`."""

    p: Platform
    workdir: Path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    workdir = make_workdir(Path(tmp_path_factory.mktemp("health-e2e", numbered=True)))
    p = start(workdir / "state", (free_port(), free_port()))
    box = Node(p, workdir)
    try:
        tar = busybox_rootfs_tar(workdir / "busybox.tar")
        p.ok("import", str(tar), "busybox:latest", "-c", 'CMD ["sh"]')
        archive = _image_with_healthcheck(workdir, tar)
        p.ok("load", "-i", str(archive))
        yield box
    finally:
        clean_stop(box.p)


def _image_with_healthcheck(workdir: Path, layer: Path) -> Path:
    """A docker-archive whose image config has a HEALTHCHECK (as `docker build` would write it)."""
    digest = hashlib.sha256(layer.read_bytes()).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["sleep", "300"],
            "Healthcheck": {
                "Test": ["CMD-SHELL", "test -e /bin/sh && echo image-check"],
                "Interval": 200_000_000,
                "Timeout": 5_000_000_000,
                "Retries": 2,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["checked:1"], "Layers": [f"{digest}/layer.tar"]}]
    out = workdir / "checked.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(layer, f"{digest}/layer.tar")
        for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, _bytes_io(data))
    out.chmod(0o644)
    return out


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def inspect(p: Platform, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(p.ok("inspect", "--type", "container", name))[0]
    return doc


def wait_for(what: str, probe: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and its last value."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"{what}: not reached in {deadline_s:.0f} s (last: {last!r})")


def health(p: Platform, name: str) -> dict[str, Any]:
    h: dict[str, Any] = inspect(p, name).get("health") or {}
    return h


def ps_status(p: Platform, name: str) -> str:
    rows = [json.loads(line) for line in p.ok("ps", "-a", "--format", "json").splitlines()]
    return str(next(r["Status"] for r in rows if r["Names"] == name))


def events(p: Platform, since: str, action: str, cid: str) -> list[dict[str, Any]]:
    """The CloudEvents of ``action`` about container ``cid`` from ``since`` until now."""
    until = datetime.now(UTC).isoformat()
    out = p.ok(
        "events", "--since", since, "--until", until, "--format", "json", "--filter", f"action={action}"
    )
    docs = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [d for d in docs if d["subject"] == cid]


def runtime_pid(state: Path) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"dockyard.runtime .*--state-dir {state}/runtime"], capture_output=True, text=True
    ).stdout.split()
    assert out, "the runtime service is not running"
    return int(out[0])


def answering(p: Platform) -> bool:
    return p.cli("ps").returncode == 0


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# --- health checks -------------------------------------------------------------------------------


def test_failing_check_turns_unhealthy_with_its_log_and_an_event(node: Node) -> None:
    p = node.p
    since = now_iso()
    p.ok(
        "run", "-d", "--name", "sick", "--health-cmd", "echo checking; exit 1",
        "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "300",
    )  # fmt: skip
    h = wait_for("sick unhealthy", lambda: (x := health(p, "sick")).get("status") == "unhealthy" and x)
    assert h["failingStreak"] >= 2
    assert [e["exitCode"] for e in h["log"]] == [1] * len(h["log"]) and 2 <= len(h["log"]) <= 5
    assert h["log"][-1]["output"] == "checking\n"
    assert ps_status(p, "sick").endswith("(unhealthy)")
    cid = inspect(p, "sick")["id"]
    # starting → unhealthy is the one change (events reach the stream through an outbox: poll)
    wait_for("the health_status event", lambda: events(p, since, "health_status", cid))
    assert [e["data"]["status"] for e in events(p, since, "health_status", cid)] == ["unhealthy"]
    p.ok("rm", "-f", "sick")


def test_passing_check_turns_healthy_and_a_slow_one_stays_starting(node: Node) -> None:
    p = node.p
    p.ok(
        "run", "-d", "--name", "fine", "--health-cmd", "test -e /bin/sh && echo ok",
        "--health-interval", "200ms", "busybox", "sleep", "300",
    )  # fmt: skip
    p.ok(
        "run",
        "-d",
        "--name",
        "later",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "busybox",
        "sleep",
        "300",
    )
    h = wait_for("fine healthy", lambda: (x := health(p, "fine")).get("status") == "healthy" and x)
    assert h["log"][-1]["exitCode"] == 0 and h["log"][-1]["output"] == "ok\n"
    assert ps_status(p, "fine").startswith("Up ") and ps_status(p, "fine").endswith("(healthy)")
    # no check has run yet: starting, and ps says so the way docker does
    assert health(p, "later")["status"] == "starting"
    assert ps_status(p, "later").endswith("(health: starting)")
    spec = inspect(p, "fine")["spec"]["healthcheck"]
    assert spec["test"] == ["CMD-SHELL", "test -e /bin/sh && echo ok"] and spec["interval"] == "0.200s"
    p.ok("rm", "-f", "fine", "later")


def test_check_from_the_image_and_no_healthcheck(node: Node) -> None:
    p = node.p
    p.ok("run", "-d", "--name", "from-image", "checked:1")
    h = wait_for(
        "image check healthy", lambda: (x := health(p, "from-image")).get("status") == "healthy" and x
    )
    assert h["log"][-1]["output"] == "image-check\n"
    # a flag overrides one field; the rest is the image's
    p.ok("run", "-d", "--name", "merged", "--health-retries", "7", "checked:1")
    check = inspect(p, "merged")["spec"]["healthcheck"]
    assert check["test"] == ["CMD-SHELL", "test -e /bin/sh && echo image-check"] and check["retries"] == 7
    # --no-healthcheck: no check, no health state, a plain STATUS
    p.ok("run", "-d", "--name", "unchecked", "--no-healthcheck", "checked:1")
    assert "health" not in inspect(p, "unchecked")
    assert ps_status(p, "unchecked").startswith("Up ") and "(" not in ps_status(p, "unchecked")
    p.ok("rm", "-f", "from-image", "merged", "unchecked")


def test_a_check_past_its_timeout_fails_and_is_killed(node: Node) -> None:
    p = node.p
    p.ok(
        "run", "-d", "--name", "slowcheck", "--health-cmd", "sleep 1000", "--health-timeout", "300ms",
        "--health-interval", "100ms", "--health-retries", "1", "busybox", "sleep", "300",
    )  # fmt: skip
    h = wait_for(
        "three timed-out checks", lambda: len((x := health(p, "slowcheck")).get("log", [])) >= 3 and x
    )
    assert h["status"] == "unhealthy"
    assert h["log"][0]["exitCode"] == -1 and "exceeded timeout (300ms)" in h["log"][0]["output"]
    # each timed-out check was killed in the container: at most the one running now is left
    top = p.ok("top", "slowcheck")
    assert top.count("sleep 1000") <= 1, top
    p.ok("rm", "-f", "slowcheck")


def test_checks_resume_after_the_runtime_is_killed(node: Node) -> None:
    p = node.p
    # healthy, then failing with so many retries that it cannot turn unhealthy: had the state not
    # been kept across the restart, it would say "starting" for good
    p.ok(
        "run", "-d", "--name", "watched", "--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms",
        "--health-retries", "100000", "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 300",
    )  # fmt: skip
    wait_for("watched healthy", lambda: health(p, "watched").get("status") == "healthy")
    p.ok("exec", "watched", "rm", "/tmp/ok")
    failing = wait_for(
        "a failed check", lambda: (x := health(p, "watched")).get("failingStreak", 0) >= 1 and x
    )
    os.kill(runtime_pid(p.state_dir), signal.SIGKILL)
    wait_for("the runtime back", lambda: answering(p))
    after = health(p, "watched")
    assert after["status"] == "healthy"  # kept (a failing check never makes "starting" healthy)
    assert after["failingStreak"] >= failing["failingStreak"]
    # and the adopted container is checked still: the streak grows, then a pass ends it
    wait_for("checks resumed", lambda: health(p, "watched")["failingStreak"] > after["failingStreak"])
    p.ok("exec", "watched", "touch", "/tmp/ok")
    wait_for(
        "streak over", lambda: (x := health(p, "watched"))["failingStreak"] == 0 and x["status"] == "healthy"
    )
    p.ok("rm", "-f", "watched")


# --- restart policies ----------------------------------------------------------------------------


def test_on_failure_3_restarts_exactly_three_times(node: Node) -> None:
    p = node.p
    since = now_iso()
    p.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:3", "busybox", "sh", "-c", "exit 1")
    state = wait_for(
        "flaky given up",
        lambda: (
            (
                (x := inspect(p, "flaky"))["state"] == "exited"
                and not x.get("restarting")
                and x.get("restartCount") == 3
            )
            and x
        ),
    )
    assert state["exitCode"] == 1 and state["spec"]["restartPolicy"] == "on-failure:3"
    cid = state["id"]
    # the first start and three restarts (events reach the stream through an outbox: poll)
    wait_for("four started events", lambda: len(events(p, since, "started", cid)) >= 4)
    time.sleep(2)  # longer than the next back-off (800 ms) would be: it stays exited
    again = inspect(p, "flaky")
    assert (again["state"], again["restartCount"]) == ("exited", 3)
    assert len(events(p, since, "started", cid)) == 4
    assert ps_status(p, "flaky").startswith("Exited (1)")
    # a start by the user counts from zero again
    p.ok("start", "flaky")
    wait_for(
        "flaky given up again",
        lambda: (
            (x := inspect(p, "flaky"))["state"] == "exited"
            and not x.get("restarting")
            and x.get("restartCount") == 3
        ),
    )
    wait_for("eight started events", lambda: len(events(p, since, "started", cid)) >= 8)
    assert len(events(p, since, "started", cid)) == 8
    p.ok("rm", "flaky")


def test_restart_flags_are_checked(node: Node) -> None:
    p = node.p
    for argv, words in (
        (["--rm", "--restart", "always"], "--rm"),
        (["--restart", "sometimes"], "invalid restart policy"),
        (["--restart", "always:3"], "on-failure only"),
        (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts"),
        (["--health-interval", "5 parsecs"], "--health-interval"),
        (["--health-timeout=-1s"], "cannot be negative"),
    ):
        done = p.cli("run", "-d", *argv, "busybox", "true")
        assert done.returncode == 125, (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and words in done.stderr, (argv, done.stderr)
    assert "Traceback" not in done.stderr


def test_always_comes_back_after_kill_9_and_user_stops_hold(node: Node) -> None:
    p = node.p
    p.ok("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "300")
    p.ok("run", "-d", "--name", "quiet", "--restart", "unless-stopped", "busybox", "sleep", "300")
    p.ok("run", "-d", "--name", "held", "--restart", "always", "busybox", "sleep", "300")
    p.ok("stop", "-t", "0", "quiet")
    p.ok("stop", "-t", "0", "held")
    for name in ("quiet", "held"):  # the decision is made before stop returns
        doc = inspect(p, name)
        assert (doc["state"], doc.get("restartCount", 0), doc.get("restarting", False)) == (
            "exited",
            0,
            False,
        )

    # the container dies while the service is frozen, its exit is recorded by conmon; then kill -9
    first = inspect(p, "phoenix")
    runtime = runtime_pid(p.state_dir)
    os.kill(runtime, signal.SIGSTOP)
    try:
        os.kill(first["pid"], signal.SIGKILL)
        exit_file = p.state_dir / "runtime" / "containers" / first["id"] / "exit"
        wait_for("conmon's exit file", exit_file.exists)
    finally:
        os.kill(runtime, signal.SIGKILL)
    wait_for("the runtime back", lambda: answering(p))
    back = wait_for(
        "phoenix running again",
        lambda: (x := inspect(p, "phoenix"))["state"] == "running" and x["pid"] != first["pid"] and x,
    )
    assert back["restartCount"] == 1
    assert p.ok("exec", "phoenix", "echo", "alive") == "alive\n"
    for name in ("quiet", "held"):  # stopped by the user: not brought back by the new service
        doc = inspect(p, name)
        assert (doc["state"], doc.get("restartCount", 0)) == ("exited", 0)
    # a restart that is due when the service dies is made by the next one: always on a command that
    # fails at once keeps restarting across a kill -9
    p.ok("run", "-d", "--name", "looping", "--restart", "always", "busybox", "sh", "-c", "exit 3")
    wait_for("looping restarted", lambda: inspect(p, "looping").get("restartCount", 0) >= 3)
    os.kill(runtime_pid(p.state_dir), signal.SIGKILL)
    wait_for("the runtime back", lambda: answering(p))
    seen = inspect(p, "looping").get("restartCount", 0)
    wait_for("looping still restarted", lambda: inspect(p, "looping").get("restartCount", 0) > seen)
    p.ok("stop", "-t", "0", "looping")
    stopped = inspect(p, "looping")
    assert stopped["state"] == "exited" and not stopped.get("restarting")
    p.ok("rm", "-f", "looping")


def test_always_comes_back_after_dockyard_up_restarts(node: Node) -> None:
    p = node.p
    if "phoenix" not in p.ok("ps", "-a", "--format", "json"):
        p.ok("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "300")
    if "quiet" not in p.ok("ps", "-a", "--format", "json"):
        p.ok("run", "-d", "--name", "quiet", "--restart", "unless-stopped", "busybox", "sleep", "300")
        p.ok("stop", "-t", "0", "quiet")
    first = wait_for("phoenix running", lambda: (x := inspect(p, "phoenix"))["state"] == "running" and x)
    assert stop(p) == 0, p.output.read_text()[-3000:]
    # the platform is down; the container dies meanwhile (its monitor records the exit)
    os.kill(first["pid"], signal.SIGKILL)
    wait_for("conmon's exit file", (p.state_dir / "runtime" / "containers" / first["id"] / "exit").exists)
    node.p = p = start(p.state_dir, (free_port(), free_port()))
    back = wait_for(
        "phoenix running after up",
        lambda: (x := inspect(p, "phoenix"))["state"] == "running" and x["pid"] != first["pid"] and x,
    )
    assert back["restartCount"] == first.get("restartCount", 0) + 1
    quiet = inspect(p, "quiet")
    assert quiet["state"] == "exited" and quiet.get("restartCount", 0) == 0
