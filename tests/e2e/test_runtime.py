"""End to end: rootless containers through the CLI, the gateway and `dockyard up`, as the unprivileged user.

One platform for the module (start-up costs seconds); each test names its own containers and images.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import USER, Platform, busybox_platform, make_workdir

from dockyard.adapters.nats.server import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from interop_helpers import Podman


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("runtime-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


def _runtime_pid(state: Path) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"dockyard.runtime .*--state-dir {state}/runtime"], capture_output=True, text=True
    ).stdout.split()
    assert out, "the runtime service is not running"
    return int(out[0])


def test_run_echo_exit_codes_and_rootless(platform: Platform) -> None:
    assert platform.cli("run", "--rm", "busybox", "echo", "hello").stdout == "hello\n"
    done = platform.cli("run", "--name", "three", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    missing = platform.cli("run", "--rm", "busybox", "nosuchcommand")
    assert missing.returncode == 127
    assert missing.stderr.count("\n") == 1 and "nosuchcommand" in missing.stderr
    not_executable = platform.cli("run", "--rm", "busybox", "/etc/passwd")
    assert not_executable.returncode == 126, not_executable.stderr
    detached = platform.cli("run", "-d", "--rm", "busybox", "nosuchcommand")
    assert detached.returncode == 127, detached.stderr
    # as docker: the miss is announced, the pull tried, and its failure is one last line
    no_image = platform.cli("run", "--rm", "nosuchimage")
    assert no_image.returncode == 125, no_image.stderr
    lines = no_image.stderr.splitlines()
    assert lines[0] == "Unable to find image 'nosuchimage' locally", lines
    assert lines[-1].startswith("dockyard: ") and "nosuchimage" in lines[-1], lines

    # rootless: the container's root is the platform's user on the host; uid 33 in the image is a
    # subordinate id outside, and 33 again inside
    platform.ok("run", "-d", "--name", "rootless", "busybox", "sleep", "60")
    pid = json.loads(platform.ok("inspect", "rootless"))[0]["pid"]
    host_uid = int(
        next(
            ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:")
        ).split()[1]
    )
    if os.geteuid() == 0:
        assert host_uid == pwd.getpwnam(USER).pw_uid
    assert platform.ok("exec", "rootless", "stat", "-c", "%u:%g", "/var/www/index.html").strip() == "33:33"
    assert platform.ok("exec", "rootless", "id", "-u").strip() == "0"
    platform.ok("rm", "-f", "rootless")


def test_writable_layer_is_the_containers_own(platform: Platform) -> None:
    platform.ok("run", "--name", "writer", "busybox", "sh", "-c", "echo mine > /data.txt")
    other = platform.cli("run", "--rm", "busybox", "cat", "/data.txt")
    assert other.returncode == 1 and "No such file" in other.stderr
    assert "A /data.txt" in platform.ok("diff", "writer").splitlines()


def test_diff_lists_a_name_that_is_not_utf8_as_its_bytes(platform: Platform) -> None:
    """Issue 15, item 6: one Latin-1 file name made `dockyard diff` fail for the whole container."""
    platform.ok("run", "--name", "latin1", "busybox", "sh", "-c", "touch \"/tmp/$(printf 'caf\\351')\"")
    done = subprocess.run(
        [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway, "diff", "latin1"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"A /tmp/caf\xe9" in done.stdout.splitlines(), done.stdout
    assert b"C /tmp" in done.stdout.splitlines()
    platform.ok("rm", "latin1")


def test_commit_keeps_additions_and_deletions(platform: Platform) -> None:
    platform.ok("run", "--name", "changer", "busybox", "sh", "-c", "echo new > /added && rm /etc/group")
    diff = platform.ok("diff", "changer").splitlines()
    assert "A /added" in diff and "D /etc/group" in diff
    image_id = platform.ok("commit", "-m", "add and delete", "changer", "committed:1").strip()
    assert image_id.startswith("sha256:")
    out = platform.ok("run", "--rm", "committed:1", "sh", "-c", "cat /added; test -e /etc/group || echo gone")
    assert out == "new\ngone\n"
    history = [
        json.loads(line) for line in platform.ok("history", "--format", "json", "committed:1").splitlines()
    ]
    assert len(history) == 2 and history[0]["Comment"] == "add and delete"
    # the deletion is a whiteout in the new layer: the layer exists even though it removes a file
    assert history[0]["Size"] != "0B"

    # rmi refuses while a container uses the image, naming it; after rm it goes
    platform.ok("create", "--name", "user-of-committed", "committed:1", "true")
    refused = platform.cli("rmi", "committed:1")
    assert refused.returncode == 1 and "user-of-committed" in refused.stderr
    platform.ok("rm", "user-of-committed")
    platform.ok("rmi", "committed:1")
    assert "committed" not in platform.ok("images")


def test_logs_follow_until_exit(platform: Platform) -> None:
    platform.ok(
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.3; done",
    )
    started = time.monotonic()
    follow = platform.cli("logs", "-f", "ticker", timeout=30)
    assert follow.returncode == 0 and follow.stdout == "tick 1\ntick 2\ntick 3\n"
    assert time.monotonic() - started >= 0.4  # it waited for lines still to come
    assert platform.ok("logs", "--tail", "1", "ticker") == "tick 3\n"


def test_exec_and_published_port(platform: Platform) -> None:
    port = free_port()
    platform.ok(
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        f"{port}:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    )
    assert platform.ok("exec", "web", "sh", "-c", "echo $((6*7))") == "42\n"
    assert platform.cli("exec", "web", "sh", "-c", "exit 5").returncode == 5
    body = _get(f"http://127.0.0.1:{port}/index.html")
    assert body == b"hello from dockyard\n"
    assert f"0.0.0.0:{port}->80/tcp" in platform.ok("ps")

    # kill -9 of the runtime service: the container keeps serving, and the restarted service
    # (dockyard up restarts it) finds it running, then sees its exit code when it stops
    os.kill(_runtime_pid(platform.state_dir), signal.SIGKILL)
    assert _get(f"http://127.0.0.1:{port}/index.html") == b"hello from dockyard\n"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ps = platform.cli("ps", "--format", "json")
        if ps.returncode == 0:
            break
        time.sleep(0.5)
    running = {c["Names"]: c for c in map(json.loads, ps.stdout.splitlines())}
    assert running["web"]["State"] == "running"
    assert platform.ok("exec", "web", "cat", "/var/www/index.html") == "hello from dockyard\n"
    platform.ok("stop", "-t", "1", "web")
    assert json.loads(platform.ok("inspect", "web"))[0]["exitCode"] == 137


def test_hostile_layer_is_refused(platform: Platform, workdir: Path) -> None:
    evil = workdir / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    evil.chmod(0o644)
    before = platform.ok("images", "-q")
    done = platform.cli("import", str(evil), "evil:1")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and ".." in done.stderr
    assert platform.ok("images", "-q") == before
    assert not (workdir / "escaped").exists() and not (workdir / "state" / "escaped").exists()


def test_push_pull_and_podman_runs_what_dockyard_committed(platform: Platform, workdir: Path) -> None:
    registry = platform.registry_http
    platform.ok("run", "--name", "for-podman", "busybox", "sh", "-c", "echo made-in-dockyard > /proof")
    platform.ok("commit", "for-podman", f"{registry}/team/proof:1")
    platform.ok("push", f"{registry}/team/proof:1")
    platform.ok("rmi", "-f", f"{registry}/team/proof:1")
    platform.ok("rm", "for-podman")
    platform.ok("pull", f"{registry}/team/proof:1")
    assert platform.ok("run", "--rm", f"{registry}/team/proof:1", "cat", "/proof") == "made-in-dockyard\n"

    podman = Podman()
    try:
        (podman.dir / "containers.conf").write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
        )
        # the platform's registry wants its login (podman 4.3's run has no --creds: pull first)
        podman.run(
            "pull", "--tls-verify=false", "--creds", platform.registry_creds(), f"{registry}/team/proof:1"
        )
        out = podman.run(
            "run",
            "--rm",
            "--network",
            "none",
            f"{registry}/team/proof:1",
            "cat",
            "/proof",
        )
        assert out.stdout == "made-in-dockyard\n"
        # and the other way: what podman pushes runs in Dockyard
        podman.import_base("localhost/from-podman:1")
        podman.run(
            "push", "--tls-verify=false", "--creds", platform.registry_creds(),
            "localhost/from-podman:1", f"docker://{registry}/team/from-podman:1",
        )  # fmt: skip
    finally:
        podman.close()
    platform.ok("pull", f"{registry}/team/from-podman:1")
    assert platform.ok("run", "--rm", f"{registry}/team/from-podman:1", "sh", "-c", "echo ran") == "ran\n"


def test_pull_from_cncf_distribution(platform: Platform, workdir: Path) -> None:
    port = free_port()
    config = workdir / "distribution.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{workdir / 'distribution'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(f"http://127.0.0.1:{port}/v2/")
        saved = workdir / "busybox-oci.tar"
        saved.write_bytes(subprocess.run(
            [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway, "save", "busybox"],
            capture_output=True, check=True,
        ).stdout)  # fmt: skip
        subprocess.run(
            ["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{saved}", f"docker://127.0.0.1:{port}/lib/busybox:1"],
            check=True, capture_output=True,
        )  # fmt: skip
        # run pulls what the node lacks when the name says where it lives (docker's --pull missing)
        ran = platform.cli("run", "--rm", f"127.0.0.1:{port}/lib/busybox:1", "echo", "from distribution")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "from distribution\n" and "Unable to find image" in ran.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: bytes = reply.read()
        return body


def _wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer")


def test_logs_are_rotated_at_max_size_and_read_whole(platform: Platform) -> None:
    """--log-opt max-size/max-file bound the log while the container writes (1 GB of output made a
    1.46 GB ctr.log before); what is kept reads back in order with no line lost at a rotation."""
    script = "for j in $(seq 0 99); do seq $((j*1000)) $((j*1000+999)); sleep 0.05; done"
    cid = platform.ok(
        "run", "-d", "--log-opt", "max-size=128k", "--log-opt", "max-file=3", "busybox", "sh", "-c", script
    ).strip()
    try:
        assert platform.ok("wait", cid, timeout=120).strip() == "0"
        directory = next(platform.state_dir.glob(f"runtime/containers/{cid}"))
        files = sorted(p.name for p in directory.glob("ctr.log*"))
        assert files == ["ctr.log", "ctr.log.1", "ctr.log.2"], files
        # 5 MB were written; each file may pass max-size by what is written between two checks
        assert sum(p.stat().st_size for p in directory.glob("ctr.log*")) < 3 * (128 + 512) * 1024
        numbers = [int(n) for n in platform.ok("logs", cid).split()]
        assert numbers[-1] == 99999 and len(numbers) > 1000
        assert numbers == list(range(numbers[0], 100000)), "a line was lost or repeated at a rotation"
        assert platform.ok("logs", "--tail", "3", cid).split() == ["99997", "99998", "99999"]
        bad = platform.cli("run", "--rm", "--log-opt", "max-size=lots", "busybox", "true")
        assert bad.returncode == 125 and "max-size" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        platform.cli("rm", "-f", cid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_rm_container_left_by_a_killed_runtime_is_removed_when_it_comes_back(platform: Platform) -> None:
    """Issue 15, item 8: a `run --rm` that failed while the runtime was down left a Created container."""
    cid = platform.ok("create", "--rm", "--name", "rm-left", "busybox", "true").strip()
    os.kill(_runtime_pid(platform.state_dir), signal.SIGKILL)
    started = platform.cli("start", "rm-left")  # the client's start: the runtime is down (or it is swept)
    assert started.returncode != 0, started.stdout
    deadline = time.monotonic() + 60  # dockyard up restarts the runtime
    names: list[str] = ["rm-left"]
    while time.monotonic() < deadline:
        ps = platform.cli("ps", "-a", "--format", "json")
        if ps.returncode == 0:
            names = [json.loads(line)["Names"] for line in ps.stdout.splitlines()]
            if "rm-left" not in names:
                break
        time.sleep(0.5)
    assert "rm-left" not in names, names
    assert not (platform.state_dir / "runtime" / "containers" / cid).exists()
    removed: list[dict[str, object]] = []
    for _ in range(50):  # the outbox publishes asynchronously
        out = platform.ok("events", "--since", "5m", "--until", "0s", "--format", "json", timeout=60)
        removed = [
            doc
            for doc in map(json.loads, out.splitlines())
            if doc.get("subject") == cid and str(doc.get("type", "")).endswith("container.removed")
        ]
        if removed:
            break
        time.sleep(0.2)
    assert len(removed) == 1, f"no container.removed event for {cid}"


def test_a_container_whose_conmon_is_killed_is_stopped_and_reported(platform: Platform) -> None:
    """kill -9 of conmon left the container running unmanaged, shown Dead: stop returned 0 without
    killing it and start ran a second copy over the same upper directory."""
    cid = platform.ok("run", "-d", "busybox", "sleep", "1000").strip()
    try:
        directory = next(platform.state_dir.glob(f"runtime/containers/{cid}"))
        init = int(json.loads(platform.ok("inspect", cid))[0]["pid"])
        assert _alive(init)
        os.kill(int((directory / "bundle" / "conmon.pid").read_text()), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = json.loads(platform.ok("inspect", cid))[0]
            if doc["state"] != "running":
                break
            time.sleep(0.1)
        assert doc["state"] == "exited", doc
        assert doc.get("exitCode") == 137 and "monitor" in doc.get("error", "")
        assert not _alive(init), "the container's process must not run on unmanaged"
        platform.ok("start", cid)  # one copy again, under a new monitor
        again = int(json.loads(platform.ok("inspect", cid))[0]["pid"])
        assert again != init and _alive(again)
        platform.ok("stop", "-t", "1", cid)
        assert not _alive(again)
    finally:
        platform.cli("rm", "-f", cid)


def test_system_prune_as_docker_does(platform: Platform) -> None:
    """Stopped containers, unused networks, dangling images and the build cache go; named
    volumes stay even with --volumes (docker's since API 1.42); system info and events answer."""
    platform.ok("run", "--name", "pruned-one", "-v", "/scratch", "busybox", "true")
    platform.ok("network", "create", "pruned-net")
    platform.ok("volume", "create", "kept-named")
    platform.ok("run", "-d", "--name", "pruned-keeper", "busybox", "sleep", "60")
    try:
        anonymous = [v for v in platform.ok("volume", "ls", "-q").split() if v != "kept-named"]
        done = platform.cli("system", "prune", "-f", "--volumes")
        assert done.returncode == 0, done.stderr
        assert "Deleted Containers:" in done.stdout and "Deleted Networks:\npruned-net" in done.stdout
        assert "Total reclaimed space:" in done.stdout
        names = platform.ok("ps", "-a", "--format", "{{.Names}}").split()
        assert "pruned-one" not in names and "pruned-keeper" in names
        volumes = platform.ok("volume", "ls", "-q").split()
        assert "kept-named" in volumes and not set(anonymous) & set(volumes), (anonymous, volumes)
        asked = platform.cli("system", "prune", input="n\n")
        assert asked.returncode == 0 and "Are you sure" in asked.stdout + asked.stderr
        assert platform.ok("system", "info", "--format", "json").startswith("{")
        until = str(int(time.time()) + 1)
        removed = platform.ok("system", "events", "--since", "5m", "--until", until, "--format", "json")
        assert '"container.removed"' in removed or "dockyard.container.removed" in removed, removed[-2000:]
    finally:
        platform.cli("rm", "-f", "pruned-keeper")
        platform.cli("volume", "rm", "kept-named")


def test_a_rename_as_the_container_exits_is_kept(platform: Platform) -> None:
    """The exit handler saved the record it read before its awaits, undoing a rename that landed
    meanwhile (docker-py's test_rename renames an `echo` container as it ends)."""
    for n in range(5):
        platform.ok("run", "-d", "--name", f"brief-{n}", "busybox", "true")
        platform.ok("rename", f"brief-{n}", f"renamed-{n}")
        platform.ok("wait", f"renamed-{n}")
        assert platform.ok("inspect", "-f", "{{.Name}}", f"renamed-{n}").strip().lstrip("/") == f"renamed-{n}"
        platform.ok("rm", f"renamed-{n}")
