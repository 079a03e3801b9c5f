"""The platform's NATS as another local user sees it, under a real `dockyard up` (as the `dockyard` user).

The outsider (`dockyard-outsider`, as in tests/integration/test_access.py) tries nats-py and a raw
socket without credentials, cannot read the credential files, and — handed a service's own
credentials, as if one leaked — still cannot delete the stream as the runtime nor publish as the
gateway. The platform's own flows (run, build → `dockyard events`) keep working.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import PYTHON, USER, Platform, busybox_platform, make_workdir

from dockyard.adapters.nats.auth import IDENTITIES, NatsAuth

OUTSIDER = "dockyard-outsider"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switches to the outsider user")

# Run as the outsider: one attempt, told on stdin; prints one JSON line saying what happened.
PROBE = r"""
import asyncio, json, socket, sys
import nats

spec = json.load(sys.stdin)

async def attempt():
    errors = []
    async def on_error(exc):
        errors.append(str(exc))
    login = spec.get("login") or {}
    try:
        nc = await nats.connect(spec["url"], error_cb=on_error, allow_reconnect=False, connect_timeout=2,
                                max_reconnect_attempts=0, **login)
    except Exception as exc:
        return {"connected": False, "error": f"{exc}", "errors": errors}
    js, out = nc.jetstream(), {"connected": True}
    try:
        if spec["do"] == "delete":
            await asyncio.wait_for(js.delete_stream("DOCKYARD_EVENTS"), 1)
        elif spec["do"] == "publish":
            forged = {"specversion": "1.0", "id": "forged-1", "source": "/dockyard/runtime",
                      "type": "io.dockyard.container.started", "subject": "forged"}
            await js.publish("dockyard.container.started", json.dumps(forged).encode(), timeout=1)
        elif spec["do"] == "read":
            await asyncio.wait_for(js.stream_info("DOCKYARD_EVENTS"), 1)
        out["done"] = True
    except Exception as exc:
        out["done"], out["error"] = False, repr(exc)
    await asyncio.sleep(0.1)
    out["errors"] = errors
    await nc.close()
    return out

if spec["do"] == "raw":
    host, port = spec["url"].removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        stream = sock.makefile("rb")
        info = stream.readline()
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        print(json.dumps({"info": info[:5].decode(), "reply": stream.readline().decode().strip()}))
elif spec["do"] == "open":
    results = {}
    for path in spec["paths"]:
        try:
            open(path).read()
            results[path] = "read"
        except OSError as exc:
            results[path] = type(exc).__name__
    print(json.dumps(results))
else:
    print(json.dumps(asyncio.run(attempt())))
"""


def outsider(spec: dict[str, object]) -> dict[str, object]:
    done = subprocess.run(
        ["setpriv", "--reuid", OUTSIDER, "--regid", OUTSIDER, "--clear-groups", "--", PYTHON, "-c", PROBE],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    try:
        pwd.getpwnam(OUTSIDER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OUTSIDER], check=True)
    with busybox_platform(make_workdir(Path(tmp_path_factory.mktemp("nats-access", numbered=True)))) as p:
        yield p


def _url(platform: Platform) -> str:
    # where `up` says NATS listens
    for line in platform.output.read_text().splitlines():
        if "nats://127.0.0.1:" in line:
            return "nats://127.0.0.1:" + line.split("nats://127.0.0.1:")[1].split()[0]
    raise AssertionError(f"no NATS address in up's output:\n{platform.output.read_text()}")


def test_an_outsider_cannot_connect_read_the_credentials_or_use_a_leaked_one(platform: Platform) -> None:
    auth = NatsAuth(platform.state_dir / "nats-auth")
    url = _url(platform)
    assert url.startswith("nats://127.0.0.1:"), url  # loopback only

    # the credentials: 0600 files of the platform's user in a 0700 directory
    owner = pwd.getpwnam(USER).pw_uid
    info = auth.directory.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (owner, 0o700)
    paths = [auth.config_file, *(auth.credentials_file(n) for n in IDENTITIES)]
    for path in paths:
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (owner, 0o600), path
    opened = outsider({"do": "open", "paths": [str(p) for p in paths]})
    assert set(opened.values()) == {"PermissionError"}, opened

    # no secret on any command line (`ps` shows those to every user)
    secrets = [auth.credentials(n).password for n in IDENTITIES]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert not any(s in cmdline for s in secrets), cmdline

    # without credentials: refused, by nats-py and on a raw socket
    anonymous = outsider({"do": "read", "url": url})
    assert anonymous["connected"] is False and "Authorization Violation" in str(anonymous), anonymous
    raw = outsider({"do": "raw", "url": url})
    assert raw == {"info": "INFO ", "reply": "-ERR 'Authorization Violation'"}, raw
    wrong = outsider({"do": "read", "url": url, "login": {"user": "admin", "password": "admin"}})
    assert wrong["connected"] is False, wrong

    # with a service's own credentials: only what that service may do
    def login(name: str) -> dict[str, str]:
        creds = auth.credentials(name)
        return {"user": creds.user, "password": creds.password, "inbox_prefix": creds.inbox_prefix}

    delete = outsider({"do": "delete", "url": url, "login": login("runtime")})
    assert delete["connected"] and not delete["done"], delete
    assert "permissions violation for publish" in str(delete["errors"]).lower(), delete
    forged = outsider({"do": "publish", "url": url, "login": login("gateway")})
    assert forged["connected"] and not forged["done"], forged
    assert "permissions violation for publish" in str(forged["errors"]).lower(), forged
    snoop = outsider({"do": "read", "url": url, "login": login("builder")})
    assert snoop["connected"] and not snoop["done"], snoop

    # the stream is intact and holds no forged event; the platform's own flows still reach it
    ran = platform.cli("run", "--rm", "busybox", "true")
    assert ran.returncode == 0, ran.stderr
    ctx = platform.state_dir.parent / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM busybox:latest\nRUN echo built > /built\n")
    ctx.chmod(0o755)
    (ctx / "Dockerfile").chmod(0o644)
    built = platform.cli("build", "-t", "natsprobe", "--progress", "plain", str(ctx), timeout=180)
    assert built.returncode == 0, built.stderr
    deadline, kinds = time.monotonic() + 30, set()
    while time.monotonic() < deadline:
        events = platform.ok("events", "--since", "10m", "--until", "0s", "--format", "json")
        lines = [json.loads(line) for line in events.splitlines()]
        kinds = {(e["type"], e["source"].split("/")[2]) for e in lines}  # /dockyard/<service>/<node>
        assert not any(e["subject"] == "forged" for e in lines), lines
        if {("io.dockyard.container.started", "runtime"), ("io.dockyard.build.finished", "builder")} <= kinds:
            break
        time.sleep(0.5)
    assert ("io.dockyard.container.started", "runtime") in kinds, kinds
    assert ("io.dockyard.build.finished", "builder") in kinds, kinds
