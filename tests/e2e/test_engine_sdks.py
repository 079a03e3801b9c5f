"""End to end: docker-py and testcontainers-python against `dockyard up`'s Docker Engine API.

The SDKs run in a subprocess as the platform's unprivileged user (docker.sock is open to user and
group ``dockyard`` only; the tests run as root), with ``DOCKER_HOST=unix://…/docker.sock``. Each
case is a short script that prints one JSON line of what it saw; the assertions are here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from e2e_platform import USER, Platform, as_user, busybox_fixtures, make_workdir

pytest.importorskip("docker", reason="docker-py is a dev dependency (make venv)")
pytest.importorskip("testcontainers", reason="testcontainers is a dev dependency (make venv)")

RYUK_OFFLINE = (
    "testcontainers' Ryuk needs the image testcontainers/ryuk (a Go binary published only on Docker Hub); "
    "this machine reaches no image registry and no package ships it, so it cannot be pulled or built here"
)


workdir, platform = busybox_fixtures("engine-sdks")


class Sdk:
    """Runs a Python script as the platform's user with the SDKs pointed at docker.sock."""

    def __init__(self, platform: Platform, workdir: Path) -> None:
        home = workdir / "sdk-home"
        home.mkdir(exist_ok=True)
        make_workdir(home)
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),  # docker-py's config.json and testcontainers' properties file
            "DOCKER_HOST": f"unix://{platform.state_dir / 'docker.sock'}",
            "TESTCONTAINERS_RYUK_DISABLED": "true",
            "PYTHONWARNINGS": "ignore",  # testcontainers warns that wait_for_logs(str) is deprecated
        }

    def __call__(self, script: str, timeout: float = 120, **env: str) -> Any:
        """The JSON the script printed on its last line (the test fails with its stderr otherwise)."""
        done = subprocess.run(
            [*as_user(USER), sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"script exited {done.returncode}:\n{done.stderr[-4000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sdk(platform: Platform, workdir: Path) -> Sdk:
    return Sdk(platform, workdir)


def test_docker_py_run_returns_the_output(sdk: Sdk, platform: Platform) -> None:
    seen = sdk(
        """
        import json, docker
        client = docker.from_env()
        out = client.containers.run("busybox", "echo hi")
        removed = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True)
        print(json.dumps({"ping": client.ping(), "api": client.version()["ApiVersion"],
                          "out": out.decode(), "removed": removed.decode(),
                          "names": [c.name for c in client.containers.list(all=True)]}))
        """
    )
    assert seen["ping"] is True and seen["api"] == "1.44"
    assert seen["out"] == "hi\n"
    assert seen["removed"] == "out\n"  # run's default is stdout only, as docker-py documents
    assert len(seen["names"]) == 1  # the first stays (no remove), the second is gone
    platform.ok("rm", "-f", seen["names"][0])


def test_docker_py_detached_logs_follow_wait_remove(sdk: Sdk, platform: Platform) -> None:
    seen = sdk(
        """
        import json, time, docker
        client = docker.from_env()
        container = client.containers.run(
            "busybox", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 1; done; exit 3"], detach=True)
        started = time.monotonic()
        chunks = [[round(time.monotonic() - started, 2), c.decode()]
                  for c in container.logs(stream=True, follow=True)]
        status = container.wait()
        container.reload()
        state = container.attrs["State"]
        container.remove(force=True)
        try:
            client.containers.get(container.id)
            gone = False
        except docker.errors.NotFound:
            gone = True
        print(json.dumps({"chunks": chunks, "wait": status, "status": container.status,
                          "exit": state["ExitCode"], "gone": gone}))
        """
    )
    lines = [text for _, text in seen["chunks"]]
    assert "".join(lines) == "line1\nline2\nline3\n"
    times = [t for t, _ in seen["chunks"]]
    # each line arrives when written (about a second apart), not all at once at the exit
    assert len(times) == 3 and times[2] - times[0] >= 1.5, seen["chunks"]
    assert seen["wait"]["StatusCode"] == 3
    assert (seen["status"], seen["exit"]) == ("exited", 3)
    assert seen["gone"] is True
    assert platform.ok("ps", "-aq") == ""


def test_docker_py_errors_carry_docker_statuses(sdk: Sdk, platform: Platform) -> None:
    seen = sdk(
        """
        import json, docker
        client = docker.from_env()

        def failure(call):
            try:
                call()
            except docker.errors.APIError as exc:
                return {"type": type(exc).__name__, "status": exc.status_code, "text": exc.explanation,
                        "not_found": isinstance(exc, docker.errors.NotFound)}
            return None

        running = client.containers.run("busybox", "sleep 60", detach=True, name="sdk-running")
        seen = {
            "container": failure(lambda: client.containers.get("nosuch")),
            "image": failure(lambda: client.images.get("nosuch:1")),
            "create": failure(lambda: client.containers.create("nosuch-local-image:1", "true")),
            "run": failure(lambda: client.containers.run("nosuch-local-image:1", "true")),
            "busy": failure(lambda: running.remove()),
            "name": failure(lambda: client.containers.create("busybox", "true", name="sdk-running")),
        }
        try:
            client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 5"], remove=True)
        except docker.errors.ContainerError as exc:
            seen["exit"] = {"status": exc.exit_status, "stderr": exc.stderr.decode()}
        running.remove(force=True)
        seen["left"] = [c.name for c in client.containers.list(all=True)]
        print(json.dumps(seen))
        """
    )
    assert seen["container"]["type"] == "NotFound" and seen["container"]["status"] == 404
    assert "No such container: nosuch" in seen["container"]["text"]
    assert (seen["image"]["type"], seen["image"]["status"]) == ("ImageNotFound", 404)
    assert (seen["create"]["type"], seen["create"]["status"]) == ("ImageNotFound", 404)
    # run pulls a missing image first (docker.io here is the platform's own registry): still a 404
    assert seen["run"]["not_found"] and seen["run"]["status"] == 404, seen["run"]
    assert (seen["busy"]["type"], seen["busy"]["status"]) == ("APIError", 409)
    assert "container is running" in seen["busy"]["text"]
    assert (seen["name"]["type"], seen["name"]["status"]) == ("APIError", 409)
    assert seen["exit"] == {"status": 5, "stderr": "bad\n"}
    assert seen["left"] == []
    assert platform.ok("ps", "-aq") == ""


def test_docker_py_lifecycle_lists_and_images(sdk: Sdk, platform: Platform) -> None:
    seen = sdk(
        """
        import json, docker
        client = docker.from_env()
        container = client.containers.run("busybox", "sleep 300", detach=True, name="sdk-life",
                                          labels={"role": "bench"})
        container.reload()
        seen = {"running": container.status, "labels": container.labels,
                "listed": [c.name for c in client.containers.list(filters={"label": "role=bench"})]}
        container.stop(timeout=1)
        container.reload()
        seen["stopped"] = container.status
        seen["exited"] = [c.name for c in client.containers.list(all=True, filters={"status": "exited"})]
        container.start()
        container.pause()
        container.reload()
        seen["paused"] = [container.status, container.attrs["State"]["Running"]]
        container.unpause()
        container.kill()
        seen["killed"] = container.wait()["StatusCode"]
        container.remove()
        said = client.containers.create("busybox", ["echo", "said so"])
        said.start()
        said.wait()
        seen["attached"] = said.attach(stream=False, logs=True).decode()  # logs=1, stream=0
        said.remove()
        box = client.containers.run("busybox", "sleep 60", detach=True)
        tty_exec = client.api.exec_create(box.id, "sh -c 'echo out; echo err >&2'", tty=True)
        seen["tty_exec"] = client.api.exec_start(tty_exec).decode()  # started with Tty false: frames
        box.remove(force=True)
        image = client.images.get("busybox")
        seen["tags"] = image.tags
        seen["images"] = [i.id for i in client.images.list()]
        seen["image_id"] = image.id
        seen["info"] = client.info()["OSType"]
        print(json.dumps(seen))
        """
    )
    assert (seen["running"], seen["labels"], seen["listed"]) == ("running", {"role": "bench"}, ["sdk-life"])
    assert seen["stopped"] == "exited" and seen["exited"] == ["sdk-life"]
    assert seen["killed"] == 137  # SIGKILL, as docker reports it
    assert seen["paused"] == ["paused", True]  # docker: a paused container is still running
    assert seen["attached"] == "said so\n"
    assert seen["tty_exec"] == "out\r\nerr\r\n"  # a terminal's output, every frame stdout
    assert seen["tags"] == ["busybox:latest"] and seen["image_id"] in seen["images"]
    assert seen["info"] == "linux"
    assert platform.ok("ps", "-aq") == ""


def test_testcontainers_waits_for_a_log_line(sdk: Sdk, platform: Platform) -> None:
    seen = sdk(
        """
        import json
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer("busybox").with_command(["sh", "-c", "sleep 1; echo ready; sleep 300"])
        with container:
            waited = wait_for_logs(container, "ready", timeout=60)
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            seen = {"waited": waited, "status": wrapped.status, "logs": container.get_logs()[0].decode(),
                    "id": container.get_container_id()}
        import docker
        seen["left"] = [c.id for c in docker.from_env().containers.list(all=True)]
        print(json.dumps(seen))
        """
    )
    assert seen["waited"] >= 0.5  # it did wait for the line, which comes a second in
    assert seen["status"] == "running"
    assert seen["logs"] == "ready\n"
    assert seen["id"] not in seen["left"]  # leaving the with-block removed it
    assert platform.ok("ps", "-aq") == ""


def test_testcontainers_with_ryuk(sdk: Sdk) -> None:
    ryuk = sdk(
        """
        import json, docker
        from testcontainers.core.config import testcontainers_config
        try:
            docker.from_env().images.get(testcontainers_config.ryuk_image)
            print(json.dumps(testcontainers_config.ryuk_image))
        except docker.errors.ImageNotFound:
            print(json.dumps(None))
        """
    )
    if ryuk is None:
        pytest.skip(RYUK_OFFLINE)
    seen = sdk(
        """
        import json
        from testcontainers.core.container import DockerContainer, Reaper
        from testcontainers.core.waiting_utils import wait_for_logs

        with DockerContainer("busybox").with_command(["sh", "-c", "echo ready; sleep 300"]) as container:
            wait_for_logs(container, "ready", timeout=60)
            print(json.dumps({"reaper": Reaper._container is not None}))
        """,
        TESTCONTAINERS_RYUK_DISABLED="false",
    )
    assert seen["reaper"] is True
