"""Health checks: docker's HEALTHCHECK, run as an exec in the container at an interval.

The check comes from the image config's ``Healthcheck`` (docker's shape, durations in
nanoseconds)::

    {"Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"], "Interval": 30000000000,
     "Timeout": 30000000000, "StartPeriod": 0, "Retries": 3}

and from ``run``'s ``--health-*`` flags, which override it field by field (a zero or empty field is
the image's); ``Test: ["NONE"]`` (``--no-healthcheck``) turns it off. ``["CMD", a, …]`` runs ``a …``,
``["CMD-SHELL", s]`` runs ``/bin/sh -c s``. The merged check is stored in the container's config.

While the container runs, a task waits ``Interval`` (30 s by default), runs the test with
``runc exec`` as the container's user (its env and cwd), stdout and stderr together, killed after
``Timeout`` (30 s) — exit 0 is a success, anything else a failure. docker's rules for the status:

    starting   from each start until the first success; failures inside ``StartPeriod`` do not count
    healthy    after a success (the failing streak is 0 again)
    unhealthy  after ``Retries`` (3) consecutive failures that count

The state is the record's ``health`` (docker's ``State.Health``)::

    {"Status": "healthy", "FailingStreak": 0,
     "Log": [{"Start": iso, "End": iso, "ExitCode": 0, "Output": "…"}]}   the last 5, 4096 bytes each

saved after every check, so a restarted service resumes the checks of the containers it adopts
with the status, streak and log it had. Each change of status is a
``dockyard.container.health_status`` event ``{"status": …}``. A paused container is not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from dockyard.core.errors import InvalidArgument
from dockyard.core.events import Subject

if TYPE_CHECKING:
    from dockyard.runtime.lifecycle import Lifecycle
    from dockyard.runtime.records import ContainerConfig, LiveContainer

log = structlog.get_logger(__name__)

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

SECOND_NS = 1_000_000_000
DEFAULT_INTERVAL_NS = 30 * SECOND_NS
DEFAULT_TIMEOUT_NS = 30 * SECOND_NS
DEFAULT_START_PERIOD_NS = 0
DEFAULT_RETRIES = 3
MIN_DURATION_NS = 1_000_000  # docker refuses a non-zero duration under 1 ms
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
KILL_GRACE_S = 5.0

_KEYS = ("Test", "Interval", "Timeout", "StartPeriod", "Retries")
_DURATIONS = ("Interval", "Timeout", "StartPeriod")


def validate(check: dict[str, Any]) -> dict[str, Any]:
    """A health check as given (user or image): its Test form, durations and retries; the known
    keys only. InvalidArgument with one line otherwise."""
    if not check:
        return {}
    out: dict[str, Any] = {}
    test = check.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise InvalidArgument("health check: Test must be a list of strings")
    if test:
        kind = test[0]
        if kind not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidArgument(f"health check: unknown test type {kind!r}: use CMD, CMD-SHELL or NONE")
        if kind == "CMD-SHELL" and (len(test) != 2 or not test[1].strip()):
            raise InvalidArgument("health check: CMD-SHELL takes one non-empty command string")
        if kind == "CMD" and len(test) < 2:
            raise InvalidArgument("health check: CMD needs a command")
        out["Test"] = list(test)
    for key in _DURATIONS:
        value = check.get(key) or 0
        if not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"health check: {key} must be a duration ≥ 0")
        if 0 < value < MIN_DURATION_NS:
            raise InvalidArgument(f"health check: {key} must be at least 1ms (or 0 for the default)")
        if value:
            out[key] = value
    retries = check.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("health check: Retries must be ≥ 0")
    if retries:
        out["Retries"] = retries
    return out


def merge(user: dict[str, Any], image: dict[str, Any] | None) -> dict[str, Any]:
    """docker's rule: the user's check, each unset field (empty Test, zero duration or retries)
    taken from the image's. Either may be empty."""
    user = validate(user)
    try:
        base = validate(image) if isinstance(image, dict) else {}
    except InvalidArgument:  # an image's malformed check is ignored, not fatal to the container
        base = {}
    if not base:
        return user
    merged = dict(base)
    merged.update({k: v for k, v in user.items() if v})
    return {k: merged[k] for k in _KEYS if k in merged}


def with_image_healthcheck(config: ContainerConfig, image_config: dict[str, Any]) -> ContainerConfig:
    """``config`` with its health check merged with the image's (called at create)."""
    return replace(config, healthcheck=merge(config.healthcheck, image_config.get("Healthcheck")))


def argv(check: dict[str, Any]) -> list[str] | None:
    """The command a check runs, or None when there is no check (none given, or NONE)."""
    test = check.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return list(test[1:])


def _duration_text(ns: int) -> str:
    """A Go-style duration, as docker words its timeout message ("30s", "500ms", "1m30s")."""
    if ns % SECOND_NS:
        return f"{ns / 1_000_000:g}ms"
    secs = ns // SECOND_NS
    minutes, secs = divmod(secs, 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or hours else "") + f"{secs}s"
    return text


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def apply_result(
    health: dict[str, Any], result: dict[str, Any], *, started: str, start_period_ns: int, retries: int
) -> dict[str, Any]:
    """The health state after one check's ``result`` (docker's handleProbeResult). Pure."""
    status = health.get("Status") or STARTING
    streak = int(health.get("FailingStreak") or 0)
    log_entries = [*list(health.get("Log") or []), result][-MAX_LOG_ENTRIES:]
    if result["ExitCode"] == 0:
        status, streak = HEALTHY, 0
    else:
        counts = True
        if status == STARTING and start_period_ns:
            try:
                since = datetime.fromisoformat(result["Start"]) - datetime.fromisoformat(started)
                counts = since.total_seconds() * SECOND_NS >= start_period_ns
            except ValueError:
                counts = True
        if counts:
            streak += 1
            if streak >= retries:
                status = UNHEALTHY
    return {"Status": status, "FailingStreak": streak, "Log": log_entries}


async def probe(
    runc: list[str], cid: str, command: list[str], *, user: str, timeout_s: float, pid_file: Path
) -> tuple[int, str]:
    """Run ``command`` in the container with ``runc exec``; (exit code, output). -1 and docker's
    message when it ran past ``timeout_s`` (it is killed, in the container too)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_file)
    try:
        proc = await asyncio.create_subprocess_exec(
            *runc,
            "exec",
            "--user",
            user,
            "--pid-file",
            str(pid_file),
            cid,
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return -1, f"cannot run the health check: {exc.strerror or exc}"
    output = bytearray()

    async def collect() -> int:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(1 << 16):
            output.extend(chunk[: max(0, MAX_OUTPUT - len(output))])
        return await proc.wait()

    try:
        code = await asyncio.wait_for(collect(), timeout_s)
    except TimeoutError:
        await _kill_check(proc, pid_file)
        return -1, f"Health check exceeded timeout ({_duration_text(round(timeout_s * SECOND_NS))})"
    except asyncio.CancelledError:
        await asyncio.shield(_kill_check(proc, pid_file))
        raise
    text = output.decode(errors="replace")
    if code == 255 and text.startswith("time=") and "level=error" in text:
        code, text = -1, _runc_error(text)  # runc could not run it (no such command…)
    return (code if code >= 0 else 128 - code), text


async def _kill_check(proc: asyncio.subprocess.Process, pid_file: Path) -> None:
    """Kill the checked process (in the container: runc exec's child), then runc exec itself.

    runc writes the pid file once the process runs; a check that timed out while runc was still
    starting it (a loaded host) is waited for, briefly, rather than left running in the container
    when runc alone is killed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + KILL_GRACE_S
    while True:
        pid = _read_pid(pid_file)
        if pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            break
        if proc.returncode is not None or loop.time() > deadline:
            break
        await asyncio.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)


def _read_pid(pid_file: Path) -> int:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return 0


def _runc_error(text: str) -> str:
    line = text.strip().splitlines()[-1]
    if 'msg="' in line:
        line = line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return line + "\n"


class HealthChecks:
    """Runs the health check of every running container that has one."""

    def __init__(self, manager: Lifecycle) -> None:
        self.m = manager
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, live: LiveContainer, *, resume: bool = False) -> None:
        """Begin checking ``live`` (it runs). A fresh start is "starting" with an empty log; ``resume``
        (an adopted container) keeps the status, streak and log the record has."""
        record = live.record
        check = record.config.healthcheck
        if argv(check) is None:
            if record.health and not resume:
                self.m.save(replace(record, health={}))
            return
        if not resume or not record.health:
            self.m.save(replace(record, health={"Status": STARTING, "FailingStreak": 0, "Log": []}))
        self.stop(live)
        self._tasks[record.id] = asyncio.create_task(self._loop(live))

    def stop(self, live: LiveContainer) -> None:
        task = self._tasks.pop(live.record.id, None)
        if task is not None:
            task.cancel()

    def recover(self) -> None:
        """Resume the checks of the running containers a previous service left."""
        for live in list(self.m.live.values()):
            if live.record.state in ("running", "paused") and live.record.id not in self._tasks:
                self.start(live, resume=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, live: LiveContainer) -> None:
        check = live.record.config.healthcheck
        command = argv(check) or []
        interval = (check.get("Interval") or DEFAULT_INTERVAL_NS) / SECOND_NS
        timeout = (check.get("Timeout") or DEFAULT_TIMEOUT_NS) / SECOND_NS
        start_period = check.get("StartPeriod") or DEFAULT_START_PERIOD_NS
        retries = check.get("Retries") or DEFAULT_RETRIES
        cid = live.record.id
        pid_file = self.m.root / cid / "health.pid"
        while True:
            await asyncio.sleep(interval)
            record = live.record
            if record.state != "running":
                if record.state == "paused":
                    continue
                return
            started = now_iso()
            code, output = await probe(
                self.m.monitor.runc_argv(),
                cid,
                command,
                user=_process_user(self.m.root / cid),
                timeout_s=timeout,
                pid_file=pid_file,
            )
            result = {"Start": started, "End": now_iso(), "ExitCode": code, "Output": output}
            record = live.record
            if record.state != "running" or self.m.live.get(cid) is not live:
                return  # it stopped (or went) while the check ran: the result says nothing
            before = (record.health or {}).get("Status") or STARTING
            health = apply_result(
                record.health or {},
                result,
                started=record.started,
                start_period_ns=start_period,
                retries=retries,
            )
            record = self.m.save(replace(record, health=health))
            if health["Status"] != before:
                log.info("health status", id=record.short_id, name=record.name, status=health["Status"])
                self.m.emit(Subject.CONTAINER_HEALTH_STATUS, record, status=health["Status"])


def _process_user(container_dir: Path) -> str:
    """The uid:gid the container's process runs as (from its bundle), which the check runs as too."""
    try:
        spec = json.loads((container_dir / "bundle" / "config.json").read_text())
        user = spec["process"]["user"]
        return f"{int(user['uid'])}:{int(user['gid'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return "0:0"
