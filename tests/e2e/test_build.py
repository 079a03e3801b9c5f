"""End to end: `dockyard build` through the CLI, the gateway, the builder and the runtime, as the
unprivileged user, from a busybox image imported into the node (no registry involved).

One platform for the module; every test uses its own context directory and tags.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import Platform, busybox_platform, make_workdir

APP = """\
FROM busybox AS build
ARG GREETING=hello
RUN echo "$GREETING from the build stage" > /greeting && mkdir -p /out && cp /greeting /out/msg
FROM busybox
ENV APP_HOME=/app MODE=prod
WORKDIR /app
COPY app.sh ./
COPY data/ /app/data/
COPY --from=build /out/msg /app/msg
RUN chmod +x app.sh && echo built > /app/stamp
LABEL org.example.app=yes
EXPOSE 8080
CMD ["./app.sh"]
"""
APP_SH = '#!/bin/sh\necho "mode=$MODE home=$APP_HOME"; cat /app/msg /app/data/one.txt /app/stamp; pwd\n'


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("build-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


def _context(root: Path, dockerfile: str, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def _history(platform: Platform, image: str) -> list[str]:
    out = platform.ok("history", "--no-trunc", "--format", "json", image)
    return [json.loads(line)["CreatedBy"] for line in out.splitlines()]


def _steps(output: str) -> dict[str, str]:
    """Plain progress → {step title: "CACHED" | "DONE"} (FROM lines left out)."""
    titles: dict[str, str] = {}
    result: dict[str, str] = {}
    for line in output.splitlines():
        m = re.match(r"#(\d+) (\[.*)", line)
        if m:
            titles[m.group(1)] = m.group(2)
            continue
        m = re.match(r"#(\d+) (CACHED|DONE)", line)
        if m and "] FROM " not in titles[m.group(1)]:
            result[titles[m.group(1)]] = m.group(2)
    return result


def test_build_run_cache_invalidation_history(platform: Platform, workdir: Path) -> None:
    ctx = _context(
        workdir / "app",
        APP,
        {"app.sh": APP_SH, "data/one.txt": "one\n", "data/two.txt": "two\n", "debug.log": "no\n"},
    )
    (ctx / ".dockerignore").write_text("*.log\n")
    first = platform.cli("build", "-t", "app", "-t", "app:v1", "--progress", "plain", str(ctx), timeout=180)
    assert first.returncode == 0, first.stderr
    steps = _steps(first.stderr)
    assert len(steps) == 10 and set(steps.values()) == {"DONE"}, first.stderr

    # the image runs and does what its CMD says: ENV, WORKDIR, COPY, COPY --from, RUN all there
    run = platform.cli("run", "--rm", "app")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "mode=prod home=/app\nhello from the build stage\none\nbuilt\n/app\n"
    assert platform.cli("run", "--rm", "app:v1", "ls", "/app").stdout.split() == [
        "app.sh",
        "data",
        "msg",
        "stamp",
    ]
    # .dockerignore kept the log out of the context; no mount stubs leaked into RUN layers
    assert platform.cli("run", "--rm", "app", "ls", "/app/data").stdout.split() == ["one.txt", "two.txt"]
    config = json.loads(platform.ok("inspect", "app"))[0]
    as_text = json.dumps(config)
    assert '"Cmd": ["./app.sh"]' in as_text and '"WorkingDir": "/app"' in as_text
    assert '"8080/tcp"' in as_text and '"org.example.app": "yes"' in as_text

    # an unchanged rebuild does no work: every step a cache hit, the same image
    image_id = platform.ok("images", "-q", "--no-trunc", "app").split()[0]
    again = platform.cli("build", "-t", "app", "--progress", "plain", str(ctx), timeout=120)
    assert again.returncode == 0, again.stderr
    assert set(_steps(again.stderr).values()) == {"CACHED"}, again.stderr
    assert f"writing image {image_id} done (10/10 steps cached" in again.stderr

    # a changed file invalidates exactly the steps after its COPY
    (ctx / "data" / "one.txt").write_text("ONE\n")
    changed = platform.cli("build", "-t", "app", "--progress", "plain", str(ctx), timeout=180)
    assert changed.returncode == 0, changed.stderr
    status = list(_steps(changed.stderr).items())
    copy_at = next(i for i, (title, _) in enumerate(status) if "COPY data/" in title)
    assert all(s == "CACHED" for _, s in status[:copy_at]), changed.stderr
    assert all(s == "DONE" for _, s in status[copy_at:]), changed.stderr
    assert platform.cli("run", "--rm", "app", "cat", "/app/data/one.txt").stdout == "ONE\n"

    # history reads like docker's
    history = _history(platform, "app")
    assert history[:8] == [
        'CMD ["./app.sh"]',
        "EXPOSE 8080",
        "LABEL org.example.app=yes",
        "RUN /bin/sh -c chmod +x app.sh && echo built > /app/stamp",
        "COPY --from=build /out/msg /app/msg",
        "COPY data/ /app/data/",
        "COPY app.sh ./",
        "WORKDIR /app",
    ]
    assert history[8] == "ENV APP_HOME=/app MODE=prod"

    # --no-cache runs every step again
    fresh = platform.cli("build", "--no-cache", "-q", str(ctx), timeout=180)
    assert fresh.returncode == 0 and fresh.stdout.strip().startswith("sha256:"), fresh.stderr


def test_build_args_target_iidfile_and_failures(platform: Platform, workdir: Path) -> None:
    ctx = _context(workdir / "args", APP, {"app.sh": APP_SH, "data/one.txt": "1\n"})
    iid = workdir / "iid"
    done = platform.cli(
        "build", "--target", "build", "--build-arg", "GREETING=bonjour", "--iidfile", str(iid), "-t", "stage",
        str(ctx), timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert iid.read_text().startswith("sha256:")
    assert platform.cli("run", "--rm", "stage", "cat", "/out/msg").stdout == "bonjour from the build stage\n"
    line = _history(platform, "stage")[0]
    assert line.startswith("RUN |1 GREETING=bonjour /bin/sh -c echo")

    bad = _context(workdir / "bad", "FROM busybox\nRUN echo about to fail; exit 3\n", {})
    failed = platform.cli("build", "-t", "bad", "--progress", "plain", str(bad), timeout=120)
    assert failed.returncode == 1
    assert "about to fail" in failed.stderr and "exit code: 3" in failed.stderr
    assert platform.cli("inspect", "bad").returncode != 0  # no image left behind under that name

    typo = _context(workdir / "typo", "FROM busybox\nRUNN true\n", {})
    err = platform.cli("build", str(typo))
    assert err.returncode == 1 and "Dockerfile:2" in err.stderr and "unknown instruction" in err.stderr


def test_reproducible_without_run(platform: Platform, workdir: Path) -> None:
    dockerfile = 'FROM busybox\nENV A=1\nCOPY . /srv/\nLABEL x=y\nCMD ["cat", "/srv/f.txt"]\n'
    ids = []
    for n in (1, 2):
        ctx = _context(workdir / f"repro{n}", dockerfile, {"f.txt": "same\n", "d/g.txt": "g\n"})
        os.utime(ctx / "f.txt", (1_000_000_000 * n, 1_000_000_000 * n))  # different mtimes, same bytes
        done = platform.cli("build", "--no-cache", "-q", str(ctx), timeout=120)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    assert ids[0] == ids[1]
    assert platform.cli("run", "--rm", ids[0]).stdout == "same\n"
    # SOURCE_DATE_EPOCH changes the timestamps, hence the id
    other = platform.cli(
        "build", "-q", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", str(workdir / "repro1")
    )
    assert other.returncode == 0 and other.stdout.strip() != ids[0]
