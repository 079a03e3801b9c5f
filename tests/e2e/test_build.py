"""End to end: `dockyard build` through the CLI, the gateway, the builder and the runtime, as the
unprivileged user, from a busybox image imported into the node (no registry involved).

One platform for the module; every test uses its own context directory and tags.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from build_helpers import build_context as _context
from build_helpers import plain_steps as _steps
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


def _history(platform: Platform, image: str) -> list[str]:
    out = platform.ok("history", "--no-trunc", "--format", "json", image)
    return [json.loads(line)["CreatedBy"] for line in out.splitlines()]


def _build_events(platform: Platform, action: str, want: int) -> list[dict[str, Any]]:
    """The ``dockyard.build.<action>`` CloudEvents of the last 10 minutes, once ``want`` arrived."""
    docs: list[dict[str, Any]] = []
    for _ in range(50):  # the outbox publishes asynchronously: give it a moment
        out = platform.ok(
            "events", "--since", "10m", "--until", "0s", "--format", "json", "--filter", f"action={action}"
        )
        docs = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(docs) >= want:
            break
        time.sleep(0.2)
    return docs


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
    # ... and says so in its events: one per step, cached, then finished with the image
    finished = _build_events(platform, "finished", 2)
    build_id = finished[-1]["subject"]
    assert finished[-1]["data"]["image"] == image_id and finished[-1]["data"]["cached"] == 10
    steps = [e["data"] for e in _build_events(platform, "step", 20) if e["subject"] == build_id]
    assert len(steps) == 10 and all(step["cached"] for step in steps), steps

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
    failed_event = _build_events(platform, "failed", 1)[-1]["data"]
    assert failed_event["exit_code"] == 3 and failed_event["step"] == "[2/2] RUN echo about to fail; exit 3"
    assert "about to fail" in failed_event["output_tail"]

    typo = _context(workdir / "typo", "FROM busybox\nRUNN true\n", {})
    err = platform.cli("build", str(typo))
    assert err.returncode == 1 and "Dockerfile:2" in err.stderr and "unknown instruction" in err.stderr


def test_a_context_symlink_never_reads_the_builders_host(platform: Platform, workdir: Path) -> None:
    """The issue's reproduction and the platform's own secrets (the builder's user can read them):
    a symlink in the context is followed inside the context, never out of it."""
    secrets = platform.state_dir / "nats-auth"
    leaks = [
        "rootlink/etc/passwd",
        f"rootlink{secrets}/builder.json",
        "statelink/nats-auth/admin.json",
        f"rootlink{secrets}/*.json",
        "uplink/*",
    ]
    for n, source in enumerate(leaks):
        ctx = _context(
            workdir / f"leak{n}", f"FROM busybox\nCOPY {source} /leak/\n", {"real/a.txt": "ours\n"}
        )
        (ctx / "rootlink").symlink_to("/")
        (ctx / "statelink").symlink_to(platform.state_dir)
        (ctx / "uplink").symlink_to("../../state/nats-auth")
        done = platform.cli("build", "-t", f"leak:{n}", str(ctx), timeout=120)
        assert done.returncode == 1, (source, done.stdout, done.stderr)
        assert "not found in build context" in done.stderr or "matched nothing" in done.stderr, done.stderr
        assert platform.cli("inspect", f"leak:{n}").returncode != 0
    ctx = _context(
        workdir / "inlink",
        "FROM busybox\nCOPY lib/a.txt rootlink/real/a.txt /in/\n",
        {"real/a.txt": "ours\n"},
    )
    (ctx / "lib").symlink_to("real")
    (ctx / "rootlink").symlink_to("/")  # the context's root, inside it
    platform.ok("build", "-t", "inlink", str(ctx), timeout=120)
    assert platform.ok("run", "--rm", "inlink", "cat", "/in/a.txt") == "ours\n"
    # a source that is a symlink out of the context is copied as the symlink, never followed
    ctx = _context(workdir / "aslink", "FROM busybox\nCOPY statelink /kept/\n", {})
    (ctx / "statelink").symlink_to(platform.state_dir)
    platform.ok("build", "-t", "aslink", str(ctx), timeout=120)
    assert platform.ok("run", "--rm", "aslink", "readlink", "/kept/statelink") == f"{platform.state_dir}\n"


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


def test_squash_merges_the_stage_layers_into_one(platform: Platform, workdir: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN echo a > /a && mkdir -p /srv && echo keep > /srv/keep\n"
        'RUN rm /a /bin/wget && echo b > /b\nCOPY f.txt /srv/f.txt\nCMD ["cat", "/b", "/srv/f.txt"]\n'
    )
    ctx = _context(workdir / "squash", dockerfile, {"f.txt": "f\n"})
    plain = json.loads(platform.ok("inspect", platform.ok("build", "-q", str(ctx), timeout=180).strip()))[0]
    done = platform.cli("build", "-q", "--squash", "-t", "squashed", str(ctx), timeout=180)
    assert done.returncode == 0, done.stderr
    config = json.loads(platform.ok("inspect", "squashed"))[0]["config"]
    base = json.loads(platform.ok("inspect", "busybox"))[0]["config"]
    # busybox's layer, then one layer for the three steps (four with the squash) that made one each
    assert len(plain["config"]["rootfs"]["diff_ids"]) == len(base["rootfs"]["diff_ids"]) + 3
    assert config["rootfs"]["diff_ids"][:-1] == base["rootfs"]["diff_ids"]
    assert len(config["rootfs"]["diff_ids"]) == len(base["rootfs"]["diff_ids"]) + 1
    history = config["history"]
    assert sum(1 for h in history if not h.get("empty_layer")) == len(config["rootfs"]["diff_ids"])
    assert history[-1]["created_by"].startswith("merge sha256:")
    assert any(h["created_by"].startswith("RUN /bin/sh -c rm /a") for h in history)  # steps stay listed
    # the files are what the steps left: deletions of the base's and of the stage's own files hold
    assert platform.cli("run", "--rm", "squashed").stdout == "b\nf\n"
    listing = platform.ok("run", "--rm", "squashed", "ls", "/", "/srv").split()
    assert "a" not in listing and "b" in listing and "keep" in listing
    assert platform.cli("run", "--rm", "squashed", "ls", "/bin/wget").returncode != 0


HEREDOCS = """\
# syntax=docker/dockerfile:1
FROM busybox
ARG WHO=world
RUN <<EOT
mkdir -p /srv
echo "hello $WHO" > /srv/greeting
EOT
RUN <<-"EOT" sh -x
	echo 'literal $WHO' > /srv/literal
	EOT
COPY <<EOT /srv/conf.ini
[main]
who=$WHO
EOT
COPY <<one.txt <<two.txt /srv/pair/
first
one.txt
second
two.txt
CMD ["cat", "/srv/greeting", "/srv/literal", "/srv/conf.ini", "/srv/pair/one.txt", "/srv/pair/two.txt"]
"""


def test_heredocs_and_a_reproducible_digest_with_run_steps(platform: Platform, workdir: Path) -> None:
    ids = []
    for n in (1, 2):
        ctx = _context(workdir / f"heredoc{n}", HEREDOCS, {})
        done = platform.cli("build", "--no-cache", "-q", str(ctx), timeout=180)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    # two clean builds of the same inputs, RUN steps included, give the same image
    assert ids[0] == ids[1]
    out = platform.cli("run", "--rm", ids[0]).stdout
    assert out == "hello world\nliteral $WHO\n[main]\nwho=world\nfirst\nsecond\n"


def test_onbuild_triggers_run_in_the_child(platform: Platform, workdir: Path) -> None:
    base = _context(
        workdir / "onbuild-base",
        "FROM busybox\nONBUILD RUN echo triggered > /trigger\nONBUILD COPY marker.txt /marker.txt\n",
        {"marker.txt": "unused\n"},
    )
    platform.ok("build", "-q", "-t", "onbuild-base", str(base), timeout=180)
    config = json.loads(platform.ok("inspect", "onbuild-base"))[0]["config"]["config"]
    assert config["OnBuild"] == ["RUN echo triggered > /trigger", "COPY marker.txt /marker.txt"]
    child = _context(workdir / "onbuild-child", 'FROM onbuild-base\nCMD ["cat", "/marker.txt", "/trigger"]\n',
                     {"marker.txt": "from the child\n"})  # fmt: skip
    platform.ok("build", "-q", "-t", "onbuild-child", str(child), timeout=180)
    assert platform.cli("run", "--rm", "onbuild-child").stdout == "from the child\ntriggered\n"
    # triggers fire once: the child's own config does not carry them on
    assert not json.loads(platform.ok("inspect", "onbuild-child"))[0]["config"]["config"].get("OnBuild")


def test_healthcheck_kept_in_the_config_and_an_oci_annotation(platform: Platform, workdir: Path) -> None:
    ctx = _context(
        workdir / "health",
        'FROM busybox\nHEALTHCHECK --interval=5s --retries=2 CMD ["test", "-e", "/bin/sh"]\n',
        {},
    )
    platform.ok("build", "-q", "-t", "healthy", str(ctx), timeout=120)
    check = json.loads(platform.ok("inspect", "healthy"))[0]["config"]["config"]["Healthcheck"]
    assert check == {"Test": ["CMD", "test", "-e", "/bin/sh"], "Interval": 5_000_000_000, "Retries": 2}
    archive = workdir / "healthy.tar"
    platform.ok("save", "-o", str(archive), "healthy", timeout=60)
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = index["manifests"][0]["digest"].replace(":", "/")
        manifest = json.loads(tar.extractfile(f"blobs/{digest}").read())  # type: ignore[union-attr]
    assert json.loads(manifest["annotations"]["dev.dockyard.image.healthcheck"]) == check


def test_a_missing_base_is_pulled_and_pull_refreshes_one(platform: Platform, workdir: Path) -> None:
    registry = platform.registry_http
    base = f"{registry}/lib/base:1"
    platform.ok("tag", "busybox", base)
    platform.ok("push", base)
    platform.ok("rmi", base)
    ctx = _context(workdir / "pull", f'FROM {base}\nCMD ["cat", "/version"]\n', {})
    # not on the node, and its name says where it lives: the build pulls it, as docker build does
    platform.ok("build", "-q", "-t", "from-registry", str(ctx), timeout=180)
    assert platform.ok("inspect", base)
    # a newer base in the registry: a plain build keeps the node's copy, --pull takes the new one
    newer = _context(workdir / "newer", "FROM busybox\nRUN echo 2 > /version\n", {})
    platform.ok("build", "-q", "-t", base, str(newer), timeout=180)
    platform.ok("push", base)
    platform.ok("tag", "busybox", base)  # the node's copy is the old one again
    kept = platform.cli("build", "-q", "-t", "from-registry", str(ctx), timeout=180)
    assert kept.returncode == 0, kept.stderr
    assert platform.cli("run", "--rm", "from-registry").returncode != 0  # no /version in the old base
    pulled = platform.cli("build", "-q", "--pull", "-t", "from-registry", str(ctx), timeout=180)
    assert pulled.returncode == 0, pulled.stderr
    assert platform.ok("run", "--rm", "from-registry") == "2\n"
    # a missing base no registry has (a short name is Docker Hub's, here the test's registry): one line
    nowhere = _context(workdir / "nowhere", "FROM no-such-base\n", {})
    failed = platform.cli("build", str(nowhere))
    assert failed.returncode == 1 and "manifest unknown" in failed.stderr, failed.stderr
    assert "library/no-such-base:latest" in failed.stderr, failed.stderr
    assert failed.stderr.count("\n") <= 2, failed.stderr


def test_a_builder_killed_mid_run_leaves_no_step_container_and_reports_the_build(
    platform: Platform, workdir: Path
) -> None:
    """kill -9 of the builder mid-RUN left the step container in `ps -a` and emitted no build.failed."""
    import signal
    import subprocess
    import sys

    from dockyard.local.procs import PidRecord

    ctx = _context(workdir / "killed", "FROM busybox\nRUN sleep 120\n")
    build = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway, "build", "-t", "killed:1", str(ctx)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not platform.ok("ps", "-aq").split() and build.poll() is None:
            time.sleep(0.2)
        steps = platform.ok("ps", "-aq").split()
        ended = build.poll() is not None
        assert steps, (
            f"the RUN step's container never appeared: {build.stderr.read() if ended else 'still building'}"
        )
        builder = PidRecord(platform.state_dir / "up.pids").read()["builder"]
        os.kill(builder.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60  # up restarts the builder, which settles what was left
        while time.monotonic() < deadline and platform.ok("ps", "-aq").split():
            time.sleep(0.5)
        assert platform.ok("ps", "-aq").split() == [], "the step container was left behind"
        events = platform.ok("events", "--since", "5m", "--until", "0s", "--format", "json", timeout=60)
        failed = [json.loads(e) for e in events.splitlines() if "build.failed" in e and "killed:1" in e]
        assert failed and "builder stopped" in json.dumps(failed[-1]), events[-2000:]
    finally:
        build.kill()
        build.wait()


def test_a_context_with_a_socket_and_hard_links_builds_with_both_names(
    platform: Platform, workdir: Path
) -> None:
    """Issue 15, item 6: a unix socket in the context gave "Exception iterating requests!" and a
    second hard link was silently dropped; now the socket is left out and both names arrive."""
    import socket

    ctx = _context(
        workdir / "special",
        "FROM busybox\nCOPY . /ctx/\n"
        "RUN [ /ctx/a.txt -ef /ctx/sub/b.txt ] && [ ! -e /ctx/app.sock ]"
        ' && echo "linked: $(cat /ctx/sub/b.txt)"\n',
        {"a.txt": "same inode\n", "sub/keep": ""},
    )
    os.link(ctx / "a.txt", ctx / "sub" / "b.txt")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(ctx / "app.sock"))
    try:
        built = platform.cli("build", "-t", "special", "--progress", "plain", str(ctx), timeout=180)
    finally:
        listener.close()
    assert built.returncode == 0, built.stderr
    assert "linked: same inode" in built.stderr, built.stderr
    assert "Exception" not in built.stderr
    listing = platform.ok("run", "--rm", "special", "ls", "/ctx", "/ctx/sub")
    assert "a.txt" in listing and "b.txt" in listing and "app.sock" not in listing, listing


def test_an_unreadable_context_file_fails_the_build_with_one_line_naming_it(
    platform: Platform, workdir: Path
) -> None:
    """Reading the context failed inside gRPC's request thread: the CLI said only "Exception
    iterating requests!". Run as the platform's user (root reads every file)."""
    import subprocess
    import sys

    from e2e_platform import as_user

    ctx = _context(workdir / "unreadable", "FROM busybox\nCOPY . /ctx/\n", {"secret.key": "no\n"})
    (ctx / "secret.key").chmod(0)
    if not as_user() and os.access(ctx / "secret.key", os.R_OK):
        pytest.skip("needs a user who cannot read a mode-0 file")
    done = subprocess.run(
        [*as_user(), sys.executable, "-m", "dockyard.cli", "-H", platform.gateway, "build", str(ctx)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"dockyard: error from sender: Permission denied: {ctx / 'secret.key'}\n"


def _image_ids(platform: Platform) -> set[str]:
    return set(platform.ok("images", "-a", "-q", "--no-trunc").split())


def test_metadata_lines_store_no_image_each(platform: Platform, workdir: Path) -> None:
    """10,000 ENV lines made an image each, configs growing with every one (issue 15): now the
    RUN's commit carries the ENV lines before it and the stage's end the rest, every history
    entry kept; a rebuild hits the cache and a changed ENV re-runs the RUN after it."""
    n = 300
    envs = "".join(f"ENV V{i}=value-{i}\n" for i in range(n))
    dockerfile = f'FROM busybox\n{envs}RUN echo $V299 > /last\nLABEL many=yes\nCMD ["cat", "/last"]\n'
    ctx = _context(workdir / "many-env", dockerfile)
    before = _image_ids(platform)
    first = platform.cli("build", "-t", "many-env", "--progress", "plain", str(ctx), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(_image_ids(platform) - before) == 2  # the RUN's image and the stage's end
    steps = _steps(first.stderr)
    assert len(steps) == n + 3 and set(steps.values()) == {"DONE"}, first.stderr[-3000:]
    history = _history(platform, "many-env")  # newest first
    assert history[:3] == ['CMD ["cat" "/last"]', "LABEL many=yes", "RUN /bin/sh -c echo $V299 > /last"]
    assert history[3 : 3 + n] == [f"ENV V{i}=value-{i}" for i in reversed(range(n))]
    config = json.loads(platform.ok("inspect", "many-env"))[0]
    assert f"V{n - 1}=value-{n - 1}" in json.dumps(config) and '"many": "yes"' in json.dumps(config)
    assert platform.ok("run", "--rm", "many-env") == "value-299\n"

    image_id = platform.ok("images", "-q", "--no-trunc", "many-env").split()[0]
    made = _image_ids(platform)
    again = platform.cli("build", "-t", "many-env", "--progress", "plain", str(ctx), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(_steps(again.stderr).values()) == {"CACHED"}, again.stderr[-3000:]
    assert platform.ok("images", "-q", "--no-trunc", "many-env").split()[0] == image_id
    assert _image_ids(platform) == made

    (ctx / "Dockerfile").write_text(dockerfile.replace("ENV V299=value-299\n", "ENV V299=changed\n"))
    changed = platform.cli("build", "-t", "many-env", "--progress", "plain", str(ctx), timeout=300)
    assert changed.returncode == 0, changed.stderr[-3000:]
    status = {title.split("] ", 1)[1]: s for title, s in _steps(changed.stderr).items()}
    assert status["RUN echo $V299 > /last"] == "DONE" and status["ENV V0=value-0"] == "DONE"
    assert platform.ok("run", "--rm", "many-env") == "changed\n"


def test_a_killed_client_cancels_its_build(platform: Platform, workdir: Path) -> None:
    """SIGKILL of `dockyard build` mid-RUN: the build stops promptly — its step container is
    removed, build.failed is emitted, its scratch dir is gone — and the builder builds on."""
    import signal
    import subprocess
    import sys

    ctx = _context(workdir / "orphan", "FROM busybox\nRUN sleep 120\n")
    scratch = platform.state_dir / "builder" / "scratch"
    build = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli", "-H", platform.gateway, "build", "-t", "orphan:1", str(ctx)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not platform.ok("ps", "-aq").split() and build.poll() is None:
            time.sleep(0.2)
        assert platform.ok("ps", "-aq").split(), "the RUN step's container never appeared"
        assert list(scratch.iterdir()), "the build has no scratch dir"
        build.send_signal(signal.SIGKILL)
        build.wait()
        killed = time.monotonic()
        while time.monotonic() < killed + 30 and platform.ok("ps", "-aq").split():
            time.sleep(0.2)
        assert platform.ok("ps", "-aq").split() == [], "the step container was left running"
        assert platform.cli("inspect", "orphan:1").returncode != 0, "the build went on without its client"
        failed: list[dict[str, Any]] = []
        while time.monotonic() < killed + 30 and not failed:
            events = platform.ok("events", "--since", "5m", "--until", "0s", "--format", "json")
            failed = [json.loads(e) for e in events.splitlines() if "build.failed" in e and "orphan:1" in e]
            time.sleep(0.2)
        assert failed, "no build.failed for the cancelled build"
        while time.monotonic() < killed + 30 and list(scratch.iterdir()):
            time.sleep(0.2)
        assert list(scratch.iterdir()) == [], "the build's scratch dir was left"
    finally:
        build.kill()
        build.wait()
    after = _context(workdir / "after-orphan", "FROM busybox\nRUN echo fine > /f\n")
    assert platform.cli("build", "-q", str(after), timeout=120).returncode == 0


def test_images_hide_a_builds_intermediates_and_filter_as_docker(platform: Platform, workdir: Path) -> None:
    """``images`` lists what was tagged and what a rebuild left dangling; ``-a`` adds the step
    images a build is made of; ``-f`` takes docker's keys, and ``system df`` counts as ``images``."""
    dockerfile = (
        'FROM busybox\nRUN echo one > /one\nRUN echo two > /two\nLABEL stage=yes\nCMD ["cat", "/one"]\n'
    )
    ctx = _context(workdir / "layered", dockerfile)
    platform.ok("build", "-t", "layered:1", str(ctx), timeout=180)
    first = platform.ok("images", "-q", "--no-trunc", "layered:1").strip()
    (ctx / "Dockerfile").write_text(dockerfile.replace('"/one"', '"/two"'))
    platform.ok("build", "-t", "layered:1", str(ctx), timeout=180)  # the RUNs cached, a new CMD
    shown = set(platform.ok("images", "-q", "--no-trunc").split())
    everything = _image_ids(platform)
    steps = everything - shown
    assert first in shown and len(steps) >= 2, (shown, everything)  # the two RUN images are hidden
    dangling = platform.ok("images", "-q", "--no-trunc", "-f", "dangling=true").split()
    assert first in dangling and not steps & set(dangling), (dangling, steps)
    assert (
        platform.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "-f", "reference=layered")
        == "layered:1\n"
    )
    labelled = platform.ok("images", "--format", "{{.Tag}}", "-f", "label=stage=yes", "-f", "dangling=false")
    assert labelled == "1\n"
    refused = platform.cli("images", "-f", "colour=red")
    assert refused.returncode == 1 and "invalid filter 'colour'" in refused.stderr, refused.stderr
    usage = json.loads(platform.ok("system", "df", "--format", "json").splitlines()[0])
    assert int(usage["TotalCount"]) == len(shown), usage
    platform.ok("rmi", "layered:1")
    platform.ok("image", "prune", "-f")


def _created(platform: Platform, image: str) -> str:
    return str(json.loads(platform.ok("inspect", "--type", "image", image))[0]["config"]["created"])


def test_a_build_is_as_old_as_its_commit_else_its_base(platform: Platform, workdir: Path) -> None:
    """Not 1970: a git context's commit time, else the newest base's time; still reproducible."""
    dockerfile = 'FROM busybox\nCOPY f.txt /f.txt\nCMD ["cat", "/f.txt"]\n'
    plain = _context(workdir / "dated-plain", dockerfile, {"f.txt": "plain\n"})
    platform.ok("build", "-t", "dated:plain", str(plain), timeout=120)
    base = _created(platform, "busybox")
    assert _created(platform, "dated:plain") == base[:19] + "Z" and not base.startswith(
        "1970"
    )  # whole seconds

    repo = _context(workdir / "dated-git", dockerfile, {"f.txt": "committed\n"})
    env = {**os.environ, "GIT_COMMITTER_DATE": "@1600000000 +0000", "GIT_AUTHOR_DATE": "@1600000000 +0000"}
    for argv in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, env=env, capture_output=True)
    first = platform.ok("build", "-q", "--no-cache", str(repo), timeout=120).strip()
    assert _created(platform, first).startswith("2020-09-13T12:26:40")
    assert platform.ok("build", "-q", "--no-cache", str(repo), timeout=120).strip() == first
    files = platform.ok("run", "--rm", first, "stat", "-c", "%Y", "/f.txt").strip()
    assert files == "1600000000"  # the copied file's time is clamped to the commit's


def test_labels_alone_on_scratch_make_an_image(platform: Platform, workdir: Path) -> None:
    """docker's --label on FROM scratch and nothing else: an image of labels only (docker-py's
    test_build_labels); without --label it is still nothing to tag."""
    ctx = _context(workdir / "scratch-labels", "FROM scratch\n")
    platform.ok("build", "-t", "labels-only", "--label", "test=OK", str(ctx), timeout=120)
    config = json.loads(platform.ok("inspect", "--type", "image", "labels-only"))[0]["config"]
    assert config["config"]["Labels"] == {"test": "OK"} and config["rootfs"]["diff_ids"] == []
    empty = platform.cli("build", "-t", "nothing", str(ctx), timeout=120)
    assert empty.returncode == 1 and "nothing to tag" in empty.stderr, empty.stderr
