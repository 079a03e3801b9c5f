"""End to end: RUN --mount (cache, bind, secret, tmpfs) and RUN --network=none in `dockyard build`,
through the CLI, the gateway, the builder and the runtime, as the unprivileged user, from a busybox
image imported into the node.

One platform for the module; every test uses its own context directory and tags.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from build_helpers import build_context as _context
from build_helpers import plain_steps as _steps
from e2e_platform import Platform, busybox_platform, make_workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("build-mounts-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


def _build(platform: Platform, ctx: Path, *flags: str) -> str:
    """Build with plain progress; fail the test unless it succeeds; the progress text."""
    done = platform.cli("build", "--progress", "plain", *flags, str(ctx), timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _cat(platform: Platform, image: str, path: str) -> str:
    return platform.ok("run", "--rm", image, "cat", path)


def _absent(platform: Platform, image: str, *paths: str) -> None:
    """None of ``paths`` exists in ``image`` (no mount left a stub or a file in a layer)."""
    for path in paths:
        done = platform.cli("run", "--rm", image, "ls", "-d", path)
        assert done.returncode != 0, f"{path} is in {image}: {done.stdout}"


def test_cache_mount_persists_across_builds_and_stays_out_of_the_image(
    platform: Platform, workdir: Path
) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/cache,id=e2e-cache "
        "--mount=type=cache,target=/owned,uid=33,gid=33,mode=0770,sharing=locked "
        "sh -c 'cat /cache/log > /seen 2>/dev/null; echo run >> /cache/log; "
        'stat -c "%u %g %a" /owned > /owned-stat; true\'\n'
    )
    ctx = _context(workdir / "cache", dockerfile)
    _build(platform, ctx, "-t", "cachemount:1")
    assert _cat(platform, "cachemount:1", "/seen") == ""  # an empty cache the first time
    assert _cat(platform, "cachemount:1", "/owned-stat") == "33 33 770\n"  # made with uid/gid/mode
    _absent(platform, "cachemount:1", "/cache", "/owned")

    # a second build (every step run again) sees what the first one left in the cache
    _build(platform, ctx, "--no-cache", "-t", "cachemount:2")
    assert _cat(platform, "cachemount:2", "/seen") == "run\n"
    _absent(platform, "cachemount:2", "/cache", "/owned")

    # the cache is a volume users can tell apart; builder prune drops it
    listed = platform.ok("volume", "ls", "-q", "-f", "label=dockyard.build.cache.id=e2e-cache").split()
    assert len(listed) == 1 and listed[0].startswith("buildcache-")
    labels = json.loads(platform.ok("volume", "inspect", listed[0]))[0]["Labels"]
    assert labels == {"dockyard.build.cache": "true", "dockyard.build.cache.id": "e2e-cache"}
    pruned = platform.ok("builder", "prune", "-f")
    assert "and 2 cache mounts" in pruned, pruned
    assert platform.ok("volume", "ls", "-q", "-f", "label=dockyard.build.cache") == ""
    _build(platform, ctx, "--no-cache", "-t", "cachemount:3")
    assert _cat(platform, "cachemount:3", "/seen") == ""


MARKERS = ("source=data", "target=/ctx,rw", "target=/ctx2", "from=tools")  # the bind steps' titles


def _status(steps: dict[str, str], marker: str) -> str:
    return next(status for title, status in steps.items() if marker in title)


def test_bind_mounts_key_the_step_on_their_files_and_leave_nothing(platform: Platform, workdir: Path) -> None:
    dockerfile = (
        "FROM busybox AS tools\n"
        "RUN mkdir -p /out && echo tool > /out/t.txt\n"
        "FROM busybox\n"
        "RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/config.txt > /copied\n"
        "RUN --mount=type=bind,target=/ctx,rw sh -c 'echo scribble > /ctx/new.txt && ls /ctx > /ctx-list'\n"
        "RUN --mount=type=bind,target=/ctx2 ls /ctx2 > /ctx2-list\n"
        "RUN --mount=type=bind,from=tools,source=/out,target=/tools cat /tools/t.txt > /from-stage\n"
    )
    ctx = _context(workdir / "bind", dockerfile, {"data/config.txt": "v1\n", "other.txt": "o\n"})
    first = _steps(_build(platform, ctx, "-t", "bindmount"))
    assert set(first.values()) == {"DONE"} and len(first) == 5, first
    assert _cat(platform, "bindmount", "/copied") == "v1\n"
    assert "new.txt" in _cat(platform, "bindmount", "/ctx-list")
    # rw: the write went to a copy; the next step's bind of the context does not see it
    assert _cat(platform, "bindmount", "/ctx2-list").split() == ["Dockerfile", "data", "other.txt"]
    assert _cat(platform, "bindmount", "/from-stage") == "tool\n"
    _absent(platform, "bindmount", "/mnt", "/ctx", "/ctx2", "/tools")

    # unchanged: every step from the cache
    assert set(_steps(_build(platform, ctx, "-t", "bindmount")).values()) == {"CACHED"}
    # a file only the whole-context binds show: those steps run again, the data bind's does not
    # (and the last step hits: the re-run steps made the same layers, hence the same parent)
    (ctx / "other.txt").write_text("changed\n")
    steps = _steps(_build(platform, ctx, "-t", "bindmount"))
    assert [_status(steps, m) for m in MARKERS] == ["CACHED", "DONE", "DONE", "CACHED"], steps
    # the bound file changed: its step runs again and sees the new content (so every later one)
    (ctx / "data" / "config.txt").write_text("v2\n")
    steps = _steps(_build(platform, ctx, "-t", "bindmount"))
    assert [_status(steps, m) for m in MARKERS] == ["DONE", "DONE", "DONE", "DONE"], steps
    assert _cat(platform, "bindmount", "/copied") == "v2\n"


SECRET = "s3cr3t-value-7f1c9a"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _contains_anywhere(blob: bytes, needle: bytes) -> bool:
    """Whether ``needle`` is in ``blob``, a tar, or any (gzipped) tar inside it."""
    if needle in blob:
        return True
    if blob[:2] == b"\x1f\x8b":
        return _contains_anywhere(gzip.decompress(blob), needle)
    try:
        with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
            for member in tf:
                f = tf.extractfile(member) if member.isreg() else None
                if f is not None and _contains_anywhere(f.read(), needle):
                    return True
    except tarfile.TarError:
        return False
    return False


def test_secrets_are_readable_in_run_and_nowhere_else(
    platform: Platform, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the Dockerfile never holds the value: the steps keep digests of what they read
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token,required "
        "sh -c 'sha256sum < /run/secrets/token > /file-sha; "
        'stat -c "%a %u" /run/secrets/token > /secret-stat\'\n'
        "RUN --mount=type=secret,id=token,env=TOKEN,mode=0444,target=/etc/tok "
        "sh -c 'printf %s \"$TOKEN\" | sha256sum > /env-sha; stat -c %a /etc/tok > /tok-stat'\n"
        "RUN --mount=type=secret,id=optional ls /run/secrets > /optional-list 2>&1; true\n"
    )
    ctx = _context(workdir / "secret", dockerfile)
    secret_file = workdir / "token.txt"
    secret_file.write_text(SECRET + "\n")
    output = _build(platform, ctx, "--secret", f"id=token,src={secret_file}", "-t", "secretbuild")
    assert _cat(platform, "secretbuild", "/file-sha").split()[0] == _sha(SECRET + "\n")
    assert _cat(platform, "secretbuild", "/secret-stat") == "400 0\n"  # BuildKit's default: 0400 root
    assert _cat(platform, "secretbuild", "/env-sha").split()[0] == _sha(SECRET + "\n")
    assert _cat(platform, "secretbuild", "/tok-stat") == "444\n"
    assert "No such file" in _cat(platform, "secretbuild", "/optional-list")  # not given: not mounted
    _absent(platform, "secretbuild", "/run/secrets", "/etc/tok")

    # the value is in no layer, config or history line, and not in the build output, the
    # platform's logs or the events
    archive = workdir / "secretbuild.tar"
    platform.ok("save", "-o", str(archive), "secretbuild")
    assert not _contains_anywhere(archive.read_bytes(), SECRET.encode())
    assert SECRET not in platform.ok("inspect", "secretbuild")
    assert SECRET not in platform.ok("history", "--no-trunc", "secretbuild")
    assert SECRET not in output
    assert SECRET not in platform.output.read_text()
    events = platform.cli("events", "--since", "1h", "--until", "0s", timeout=60)
    assert events.returncode == 0 and "build" in events.stdout, events.stderr
    assert SECRET not in events.stdout

    # from the environment; the secret's value is not in the cache key, so the same steps hit
    monkeypatch.setenv("E2E_TOKEN", "another-value")
    again = _build(platform, ctx, "--secret", "id=token,env=E2E_TOKEN", "-t", "secretbuild:env")
    assert set(_steps(again).values()) == {"CACHED"}

    # a required secret not given: the step fails with one line, no image is made
    done = platform.cli("build", "-t", "nosecret", str(ctx), timeout=120)
    assert done.returncode == 1
    assert "secret 'token' is required but was not given" in done.stderr.strip().splitlines()[-1]
    assert platform.cli("inspect", "nosecret").returncode != 0
    bad = platform.cli("build", "--secret", "id=token,src=/nonexistent/file", str(ctx))
    assert bad.returncode == 1 and "cannot read /nonexistent/file" in bad.stderr


def test_tmpfs_mount_and_no_network(platform: Platform, workdir: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=tmpfs,target=/scratch,size=8m "
        'sh -c \'grep " /scratch " /proc/mounts > /tmpfs-line; cp /bin/busybox /scratch/busybox '
        "&& /scratch/busybox true && echo exec-ok > /tmpfs-exec'\n"
        "RUN --network=none cat /proc/net/dev > /net-none\n"
        "RUN cat /proc/net/dev > /net-default\n"
        "RUN --network=host cat /proc/net/dev > /net-host\n"
    )
    ctx = _context(workdir / "tmpfs", dockerfile)
    _build(platform, ctx, "-t", "tmpfsnet")
    line = _cat(platform, "tmpfsnet", "/tmpfs-line").split()
    assert line[1:3] == ["/scratch", "tmpfs"] and "size=8192k" in line[3], line
    assert _cat(platform, "tmpfsnet", "/tmpfs-exec") == "exec-ok\n"  # exec allowed, as BuildKit's
    _absent(platform, "tmpfsnet", "/scratch")

    def interfaces(path: str) -> list[str]:
        lines = _cat(platform, "tmpfsnet", path).splitlines()[2:]
        return sorted(line.split(":")[0].strip() for line in lines)

    assert interfaces("/net-none") == ["lo"]  # --network=none: a namespace with loopback only
    assert len(interfaces("/net-default")) > 1  # the default network has a real interface
    assert len(interfaces("/net-host")) > 1  # host: the node's namespace (rootless: slirp4netns')


def test_mount_errors_are_one_line(platform: Platform, workdir: Path) -> None:
    for name, dockerfile, message in (
        ("ssh", "FROM busybox\nRUN --mount=type=ssh true\n", "ssh mounts are not supported"),
        ("nosrc", "FROM busybox\nRUN --mount=source=nope,target=/n true\n", "source /nope not found"),
        ("root", "FROM busybox\nRUN --mount=type=tmpfs,target=/ true\n", 'invalid mount target "/"'),
    ):
        done = platform.cli("build", str(_context(workdir / f"err-{name}", dockerfile)), timeout=120)
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert message in last and "Traceback" not in done.stderr, done.stderr


def test_a_secret_a_failing_step_prints_reaches_no_event_log_or_progress(
    platform: Platform, workdir: Path
) -> None:
    """The build.failed event keeps the step's output tail for 30 days: it must hold no secret,
    in any form the step may print it."""
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token sh -c 'cat /run/secrets/token; "
        'base64 /run/secrets/token; echo; tr -d "\\n" < /run/secrets/token | base64; exit 3\'\n'
    )
    ctx = _context(workdir / "secret-fail", dockerfile)
    secret_file = workdir / "leak-token.txt"
    secret_file.write_text(SECRET + "\n")
    done = platform.cli(
        "build", "--progress", "plain", "--secret", f"id=token,src={secret_file}", str(ctx), timeout=120
    )
    assert done.returncode != 0 and "exit code: 3" in done.stderr + done.stdout
    forms = [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode((SECRET + "\n").encode()).decode(),
    ]
    assert "***" in done.stdout + done.stderr  # the output is there, masked
    events = platform.ok("events", "--since", "1h", "--until", "0s", "--format", "json", timeout=60)
    failed = [e for e in events.splitlines() if "build.failed" in e]
    assert failed, events[-2000:]
    for text in (
        done.stdout,
        done.stderr,
        events,
        *(p.read_text(errors="replace") for p in platform.state_dir.glob("logs/*.log")),
    ):
        for form in forms:
            assert form not in text
