"""End to end: the build cache shared through the platform's own registry (``--cache-to`` /
``--cache-from type=registry``) and ``build --push``, as the unprivileged user.

- One node, emptied: a build exports its cache (mode=max); the builder's cache and every step
  image are then removed (only busybox stays), and a build with ``--cache-from`` runs no step
  and makes the same image — which it could not do by running them again: a RUN writes a
  random uuid.
- A second node (another platform, its own state dir): it gets busybox and the image pushed by
  ``build --push`` from the first node's registry; with ``--cache-from`` of a mode=min export
  it runs only the stage the final image does not contain, and makes the same image.
- Failures: an unreachable cache to import from is a warning; an export that fails fails the
  build after the image is made and says so; a --push tag without registry is refused first.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_helpers import build_context as _context
from build_helpers import plain_steps as _steps
from e2e_platform import Platform, busybox_platform, make_workdir

from dockyard.adapters.nats.server import free_port
from dockyard.api.builds.v1 import builds_pb2, builds_pb2_grpc
from dockyard.cli.client import channel

# A RUN that cannot repeat itself (a random uuid): had a --cache-from build run it, the image would differ.
STAMPED = """\
FROM busybox AS build
RUN cat /proc/sys/kernel/random/uuid > /stamp && mkdir -p /out && cp /stamp /out/stamp
FROM busybox
WORKDIR /app
COPY app.txt ./
COPY --from=build /out/stamp ./stamp
RUN cat app.txt stamp > both
CMD ["cat", "/app/both"]
"""
# A build stage whose RUN is reproducible (RUN layers are clamped to the epoch), and a final
# stage that is not: mode=min exports only the final stage's steps.
MIN = """\
FROM busybox AS build
RUN mkdir -p /out && echo same every time > /out/msg
FROM busybox
COPY --from=build /out/msg /msg
RUN cat /proc/sys/kernel/random/uuid > /when
CMD ["cat", "/msg", "/when"]
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("build-cache-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(_node_dir(workdir / "one")) as p:
        yield p


def _node_dir(path: Path) -> Path:
    path.mkdir()
    return make_workdir(path)


def _build(platform: Platform, ctx: Path, *flags: str) -> tuple[str, str]:
    """Build with plain progress; (image id, stderr)."""
    iid = ctx / "iid"
    done = platform.cli("build", "--progress", "plain", "--iidfile", str(iid), *flags, str(ctx), timeout=300)
    assert done.returncode == 0, done.stderr
    return iid.read_text(), done.stderr


def _index(platform: Platform, repository: str, tag: str) -> dict:  # type: ignore[type-arg]
    """The index at ``repository:tag`` in ``platform``'s registry, read with its login."""
    request = urllib.request.Request(
        f"http://{platform.registry_http}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json", **platform.registry_headers()},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _names(platform: Platform) -> list[str]:
    out = platform.ok("images", "-a", "--format", "json")
    return [f"{r['Repository']}:{r['Tag']}" for r in map(json.loads, out.splitlines())]


def _only_busybox_left(platform: Platform) -> None:
    """Empty the builder's cache and the node's store of everything but busybox."""
    with channel(platform.gateway) as ch:
        builds_pb2_grpc.BuildsStub(ch).PruneCache(builds_pb2.PruneCacheRequest(keep_seconds=0))
    for name in _names(platform):
        if name != "busybox:latest" and not name.endswith(":<none>"):
            platform.ok("rmi", "-f", name)
    platform.ok("image", "prune", "-f")
    assert _names(platform) == ["busybox:latest"]


def test_a_node_emptied_rebuilds_from_the_registry_cache(platform: Platform, workdir: Path) -> None:
    registry = platform.registry_http
    ctx = _context(workdir / "stamped", STAMPED, {"app.txt": "app\n"})
    cache = f"{registry}/cache/stamped:buildcache"

    first, out = _build(platform, ctx, "-t", "stamped", "--cache-to", f"type=registry,ref={cache},mode=max")
    steps = _steps(out)
    assert len(steps) == 6 and set(steps.values()) == {"DONE"}, out
    assert f"exporting cache to {cache} (mode=max)" in out
    made = platform.ok("run", "--rm", "stamped")
    assert re.fullmatch(r"app\n[0-9a-f-]{36}\n", made)

    # the registry holds one index of our artifact type over the step images, keys annotated
    index = _index(platform, "cache/stamped", "buildcache")
    assert index["artifactType"] == "application/vnd.dockyard.build.cache.v1+json"
    assert len(index["manifests"]) == 6  # one image per step of both stages
    assert all(len(m["annotations"]["dev.dockyard.build.cache.keys"]) >= 64 for m in index["manifests"])

    _only_busybox_left(platform)
    again, out = _build(platform, ctx, "-t", "stamped", "--cache-from", f"type=registry,ref={cache}")
    steps = _steps(out)
    assert len(steps) == 6 and set(steps.values()) == {"CACHED"}, out
    assert f"importing cache manifest from {cache}" in out
    assert again == first
    assert platform.ok("run", "--rm", "stamped") == made  # the first build's stamp: nothing re-ran

    # without --cache-from the emptied node has to run the steps
    _only_busybox_left(platform)
    fresh, out = _build(platform, ctx)
    assert "CACHED" not in set(_steps(out).values()) and fresh != first


def test_a_second_node_uses_the_pushed_image_and_a_min_cache(platform: Platform, workdir: Path) -> None:
    registry = platform.registry_http
    ctx = _context(workdir / "min", MIN, {})
    cache = f"{registry}/team/min:cache"
    tag = f"{registry}/team/min:1"
    platform.ok("tag", "busybox", f"{registry}/base/busybox:1")
    platform.ok("push", f"{registry}/base/busybox:1")

    first, out = _build(platform, ctx, "-t", tag, "--push", "--cache-to", f"type=registry,ref={cache}")
    assert f"pushing {tag}" in out and re.search(r"1: digest: sha256:[0-9a-f]{64} size: \d+", out), out
    index = _index(platform, "team/min", "cache")
    assert len(index["manifests"]) == 3  # mode=min: the final stage's COPY, RUN and CMD only

    with busybox_platform(_node_dir(workdir / "two")) as other:
        # another node's registry asks for its login, as a second docker host would
        login = platform.registry_login()
        other.ok("login", "-u", login["username"], "--password", login["password"], registry)
        # the same busybox image (an import would have another created time, so another id)
        other.ok("rmi", "-f", "busybox:latest")
        other.ok("pull", f"{registry}/base/busybox:1")
        other.ok("tag", f"{registry}/base/busybox:1", "busybox:latest")

        # --push: what the first node built is in the registry, same id, runs here
        other.ok("pull", tag)
        pushed = json.loads(other.ok("inspect", "--type", "image", tag))[0]["id"]
        assert pushed == first
        ran = other.ok("run", "--rm", tag)

        second, out = _build(other, ctx, "-t", "min", "--cache-from", cache)
        steps = list(_steps(out).items())
        assert [s for _, s in steps] == ["DONE", "CACHED", "CACHED", "CACHED"], (
            out
        )  # only the build stage ran
        assert "RUN mkdir" in steps[0][0]
        assert second == first
        assert other.ok("run", "--rm", "min") == ran


def test_sharing_failures_are_one_clear_line(platform: Platform, workdir: Path) -> None:
    ctx = _context(workdir / "fail", 'FROM busybox\nLABEL a=b\nCMD ["true"]\n', {})
    dead = f"127.0.0.1:{free_port()}"

    # an unreachable cache to import from: a warning, and the build goes on
    _, out = _build(platform, ctx, "--cache-from", f"type=registry,ref={dead}/c:1")
    warning = next(line for line in out.splitlines() if line.startswith("WARNING: cache import"))
    assert (
        warning.startswith(f"WARNING: cache import from {dead}/c:1 skipped: ")
        and f"{dead} is unreachable" in warning
    )
    assert set(_steps(out).values()) == {"DONE"}

    # an export that fails: the build fails after the image is made, and the line says which
    done = platform.cli(
        "build", "-t", "made-anyway", "--cache-to", f"type=registry,ref={dead}/c:1", str(ctx), timeout=300
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert re.match(
        rf"dockyard: service unavailable: the image sha256:[0-9a-f]{{64}} was built and tagged made-anyway, "
        rf"but exporting cache to {dead}/c:1 \(mode=min\) failed: registry {dead} is unreachable at http://",
        last,
    ), done.stderr
    assert platform.cli("inspect", "made-anyway").returncode == 0
    pushed = platform.cli("build", "--push", "-t", f"{dead}/app:1", str(ctx), timeout=300)
    assert pushed.returncode == 1
    assert (
        f"tagged {dead}/app:1, but pushing {dead}/app:1 failed: registry {dead} is unreachable"
        in (pushed.stderr.strip().splitlines()[-1])
    )
    # ... unless ignore-error=true
    _, out = _build(platform, ctx, "--cache-to", f"type=registry,ref={dead}/c:1,ignore-error=true")
    assert "WARNING: the image" in out and "ignore-error=true" in out

    # bad values and a --push tag that names no registry: refused before anything is built
    bad = platform.cli("build", "--cache-from", "type=local,src=/tmp", str(ctx))
    assert (bad.returncode, bad.stderr) == (
        1,
        "dockyard: --cache-from type=local: only type=registry is supported\n",
    )
    nopush = platform.cli("build", "--push", "-t", "app:1", str(ctx))
    assert nopush.returncode == 1 and nopush.stderr.count("\n") == 1, nopush.stderr
    assert "--push: tag 'app:1': want HOST[:PORT]/NAME[:TAG]" in nopush.stderr
