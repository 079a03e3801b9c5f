"""End to end: docker's names work unchanged when docker.io is mirrored in registries.conf.

A real platform as the unprivileged user, with ``CONTAINERS_REGISTRIES_CONF`` naming a
registries.conf whose ``docker.io`` entry has the platform's own registry as an (insecure) mirror,
as a lab that mirrors Docker Hub configures it for podman. The test pushes
``library/busybox:latest``, ``library/alpine:3.10`` and ``library/node:18-alpine`` there (all a
busybox image), and then ``pull busybox``, ``run --rm alpine:3.10`` and ``FROM node:18-alpine``
work as they do with docker. Then the mirror and the location are both dead: one line naming both.
No traffic leaves loopback: the mirror serves everything asked of docker.io here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_helpers import build_context
from e2e_platform import Platform, busybox_rootfs_tar, clean_stop, make_workdir, start

from dockyard.adapters.nats.server import free_port

MIRRORED = """\
[[registry]]
prefix = "docker.io"
location = "docker.io"

  [[registry.mirror]]
  location = "{mirror}"
  insecure = true
"""

DEAD = """\
[[registry]]
prefix = "docker.io"
location = "{location}"
insecure = true

  [[registry.mirror]]
  location = "{mirror}"
  insecure = true
"""


def _conf(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("docker-names-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    ports = (free_port(), free_port())
    conf = _conf(workdir / "registries.conf", MIRRORED.format(mirror=f"127.0.0.1:{ports[1]}"))
    p = start(workdir / "state", ports, env={"CONTAINERS_REGISTRIES_CONF": str(conf)})
    try:
        yield p
    finally:
        clean_stop(p)


def _images(platform: Platform) -> dict[str, str]:
    """``repository:tag`` → image id, as ``dockyard images`` lists them."""
    out = platform.ok("images", "--format", "json")
    return {f"{d['Repository']}:{d['Tag']}": d["ID"] for d in map(json.loads, out.splitlines()) if d}


def _id(platform: Platform, image: str) -> str:
    doc: dict[str, str] = json.loads(platform.ok("inspect", image))[0]
    return doc["id"]


def test_docker_hub_names_through_a_mirror(platform: Platform, workdir: Path) -> None:
    mirror = platform.registry_http
    platform.ok("import", str(busybox_rootfs_tar(workdir / "busybox.tar")), "seed:1", "-c", 'CMD ["sh"]')
    hub = ("library/busybox:latest", "library/alpine:3.10", "library/node:18-alpine")
    for name in hub:
        platform.ok("tag", "seed:1", f"{mirror}/{name}")
        platform.ok("push", f"{mirror}/{name}", timeout=120)
        platform.ok("rmi", f"{mirror}/{name}")
    assert not any(k.startswith(("busybox", "alpine", "node")) for k in _images(platform))

    # a bare name is docker.io/library/busybox, served by the mirror, listed as docker lists it
    platform.ok("pull", "busybox", timeout=120)
    images = _images(platform)
    assert "busybox:latest" in images, images
    seed = _id(platform, "seed:1")
    for name in ("busybox", "busybox:latest", "docker.io/library/busybox", "index.docker.io/library/busybox"):
        assert _id(platform, name) == seed, name

    # run pulls a missing image by its docker name
    assert platform.ok("run", "--rm", "alpine:3.10", "echo", "ok", timeout=120) == "ok\n"
    assert "alpine:3.10" in _images(platform)

    # and so does a build's FROM
    ctx = build_context(
        workdir / "ctx", 'FROM node:18-alpine\nRUN echo built > /stamp\nCMD ["cat", "/stamp"]\n'
    )
    platform.ok("build", "-q", "-t", "from-hub", str(ctx), timeout=180)
    assert platform.ok("run", "--rm", "from-hub") == "built\n"
    assert "node:18-alpine" in _images(platform)


def test_a_dead_mirror_and_a_dead_location_are_named_in_one_line(platform: Platform, workdir: Path) -> None:
    mirror, location = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    conf = workdir / "registries.conf"
    saved = conf.read_text()
    _conf(conf, DEAD.format(mirror=mirror, location=location))  # read at every pull: no restart
    try:
        failed = platform.cli("pull", "debian:bookworm", timeout=120)
        _conf(conf, '[[registry]]\nlocation = "https://x.io"\n')
        broken = platform.cli("pull", "busybox", timeout=60)
    finally:
        _conf(conf, saved)
    assert broken.returncode != 0 and broken.stderr.count("\n") == 1, broken.stderr
    assert f"registries configuration {conf}: " in broken.stderr and "without a scheme" in broken.stderr
    assert failed.returncode != 0
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert "debian:bookworm" in lines[0] and f"mirror {mirror}" in lines[0] and location in lines[0], lines[0]
    assert "unreachable" in lines[0], lines[0]
