"""End to end: volumes through the CLI, the gateway and `dockyard up`, as the unprivileged user.

One platform for the module. Images are made in the tests themselves (run + commit), so every
property is checked on content the platform wrote: copy-up from an image, uid 999 round trips,
refusal while used, prune, --mount, --volumes-from, anonymous volumes and their removal.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_platform import USER, Platform, busybox_platform, make_workdir

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("volumes-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        # an image with content at /srv/app owned by uid 999 (0750), and a VOLUME /cache with a file
        p.ok(
            "run",
            "--name",
            "volprep",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /srv/app /cache && echo from-image > /srv/app/seed && chown -R 999:999 /srv/app"
            " && chmod 0750 /srv/app && echo cached > /cache/c",
        )
        p.ok("commit", "-c", "VOLUME /cache", "volprep", "volimg:1")
        p.ok("rm", "volprep")
        yield p


def _inspect(platform: Platform, name: str) -> dict[str, object]:
    found = json.loads(platform.ok("volume", "inspect", name))
    assert len(found) == 1
    return found[0]  # type: ignore[no-any-return]


def _volumes(platform: Platform) -> set[str]:
    return set(platform.ok("volume", "ls", "-q").split())


def _subuid_base() -> int | None:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in (USER, str(pwd.getpwnam(USER).pw_uid)):
            return int(rest.split(":")[0])
    return None


def _one_error_line(done: object) -> str:
    stderr: str = done.stderr  # type: ignore[attr-defined]
    assert stderr.count("\n") == 1 and stderr.startswith("dockyard: "), stderr
    return stderr


def test_named_volume_outlives_its_container_filled_from_the_image_uid_999(platform: Platform) -> None:
    assert platform.ok("volume", "create", "--label", "team=a", "appdata") == "appdata\n"
    info = _inspect(platform, "appdata")
    assert info["Labels"] == {"team": "a"} and info["Driver"] == "local" and info["Anonymous"] is False
    assert str(info["Mountpoint"]).endswith("/volumes/appdata/_data")

    # first mount: the empty volume is filled from the image's /srv/app, with its owner and mode;
    # uid 999 (the directory's owner in the image) writes into it
    out = platform.ok(
        "run",
        "--rm",
        "--name",
        "writer999",
        "-u",
        "999:999",
        "-v",
        "appdata:/srv/app",
        "volimg:1",
        "sh",
        "-c",
        "cat /srv/app/seed && echo written-by-999 > /srv/app/new && stat -c '%u:%g %a' /srv/app",
    )
    assert out == "from-image\n999:999 750\n"

    # the next container (another image, no /srv/app in it) sees the data, owned by 999
    out = platform.ok(
        "run",
        "--rm",
        "-v",
        "appdata:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/new; stat -c '%u:%g' /data/new",
    )
    assert out == "written-by-999\n999:999\n"
    # on the host: a subordinate id of the platform's user, not 999 and not root
    new = Path(str(info["Mountpoint"])) / "new"
    if os.geteuid() == 0 and (base := _subuid_base()) is not None:
        assert new.stat().st_uid == base + 998
    # read-only means read-only
    done = platform.cli("run", "--rm", "-v", "appdata:/data:ro", "busybox", "touch", "/data/x")
    assert done.returncode == 1 and "Read-only file system" in done.stderr

    # a volume is filled only on its first mount, and only when empty: an emptied volume stays so
    platform.ok("run", "--rm", "-v", "appdata:/srv/app", "volimg:1", "sh", "-c", "rm -rf /srv/app/*")
    assert platform.ok("run", "--rm", "-v", "appdata:/srv/app", "volimg:1", "ls", "-A", "/srv/app") == ""

    # -v NAME on first use creates the volume; nocopy leaves it empty
    assert "fresh" not in _volumes(platform)
    assert (
        platform.ok("run", "--rm", "-v", "fresh:/srv/app", "volimg:1", "cat", "/srv/app/seed")
        == "from-image\n"
    )
    assert "fresh" in _volumes(platform)
    assert (
        platform.ok(
            "run",
            "--rm",
            "--mount",
            "source=nocp,target=/srv/app,volume-nocopy",
            "volimg:1",
            "ls",
            "-A",
            "/srv/app",
        )
        == ""
    )

    # events: created (with its labels) and, below, removed
    platform.ok("volume", "rm", "fresh", "nocp")
    events = [
        json.loads(line)
        for line in platform.ok(
            "events", "--since", "10m", "--until", "0s", "--format", "json", "--filter", "type=volume"
        ).splitlines()
    ]
    seen = {(e["type"], e["subject"]) for e in events}
    assert ("io.dockyard.volume.created", "appdata") in seen
    assert ("io.dockyard.volume.removed", "fresh") in seen
    created = next(e for e in events if e["subject"] == "appdata")
    assert created.get("dockyardlabels") == {"team": "a"}


def test_rm_is_refused_while_a_container_uses_the_volume(platform: Platform) -> None:
    platform.ok("create", "--name", "holder", "-v", "kept:/k", "busybox", "true")  # never started
    done = platform.cli("volume", "rm", "kept")
    assert done.returncode == 1 and "holder" in _one_error_line(done)
    assert "kept" in _volumes(platform)
    assert platform.ok("volume", "ls", "-q", "-f", "dangling=false").split().count("kept") == 1
    assert "kept" not in platform.ok("volume", "ls", "-q", "-f", "dangling=true").split()
    assert "holder" in _inspect(platform, "kept")["UsedBy"]  # type: ignore[operator]
    platform.ok("rm", "holder")
    assert platform.ok("volume", "rm", "kept") == "kept\n"
    done = platform.cli("volume", "rm", "kept")
    assert done.returncode == 1 and "no such volume" in _one_error_line(done)
    platform.ok("volume", "rm", "-f", "kept")


def test_prune_asks_then_removes_unused_volumes_only(platform: Platform) -> None:
    platform.ok("volume", "create", "unused1")
    platform.ok("volume", "create", "--label", "keep=yes", "unused2")
    platform.ok("run", "-d", "--name", "pruneuser", "-v", "inuse:/d", "busybox", "sleep", "60")
    platform.ok(
        "run", "--rm", "-v", "unused1:/d", "busybox", "sh", "-c", "head -c 200000 /dev/zero > /d/blob"
    )

    answered_no = platform.cli("volume", "prune", input="n\n")
    assert answered_no.returncode == 0 and "Are you sure" in answered_no.stderr
    assert {"unused1", "unused2", "inuse"} <= _volumes(platform)

    filtered = platform.ok("volume", "prune", "-f", "--filter", "label!=keep")
    assert "unused1" in filtered and "unused2" not in filtered
    assert re.search(r"Total reclaimed space: 2\d\dkB", filtered), filtered
    assert platform.cli("volume", "prune", input="y\n").returncode == 0
    left = _volumes(platform)
    assert "inuse" in left and not {"unused1", "unused2"} & left
    platform.ok("rm", "-f", "pruneuser")


def test_anonymous_volumes_from_v_and_image_volume_go_with_rm_v_and_rm(platform: Platform) -> None:
    before = _volumes(platform)
    # the image's VOLUME /cache becomes an anonymous volume, filled from the image
    assert platform.ok("run", "--name", "anon", "-v", "/scratch", "volimg:1", "cat", "/cache/c") == "cached\n"
    made = _volumes(platform) - before
    assert len(made) == 2 and all(HEX64.match(n) for n in made)
    mounts = json.loads(platform.ok("inspect", "anon"))[0]["spec"]["mounts"]
    assert {(m["type"], m["target"]) for m in mounts} == {("volume", "/scratch"), ("volume", "/cache")}
    assert all(_inspect(platform, n)["Anonymous"] is True for n in made)
    platform.ok("rm", "-v", "anon")
    assert _volumes(platform) == before

    # --rm takes them along too; a named volume stays
    platform.ok("run", "--rm", "-v", "named-stays:/n", "volimg:1", "true")
    assert _volumes(platform) == before | {"named-stays"}
    # plain rm keeps anonymous volumes (docker's rule)
    platform.ok("run", "--name", "anon2", "volimg:1", "true")
    platform.ok("rm", "anon2")
    assert len(_volumes(platform) - before - {"named-stays"}) == 1


def test_mount_syntax_and_volumes_from(platform: Platform, workdir: Path) -> None:
    (workdir / "hostdir").mkdir()
    host = make_workdir(workdir / "hostdir")
    (host / "from-host").write_text("host file\n")
    (host / "from-host").chmod(0o644)
    platform.ok(
        "run",
        "-d",
        "--name",
        "mnt",
        "--mount",
        "type=volume,source=mv,target=/m",
        "--mount",
        f"type=bind,src={host},dst=/h,readonly",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
        "busybox",
        "sleep",
        "60",
    )
    platform.ok("exec", "mnt", "sh", "-c", "echo hi > /m/f")
    assert platform.ok("exec", "mnt", "cat", "/h/from-host") == "host file\n"
    done = platform.cli("exec", "mnt", "touch", "/h/nope")
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    tmpfs = platform.ok("exec", "mnt", "grep", " /t ", "/proc/mounts")
    assert tmpfs.startswith("tmpfs /t tmpfs") and "size=1024k" in tmpfs and "mode=1770" in tmpfs
    mounts = json.loads(platform.ok("inspect", "mnt"))[0]["spec"]["mounts"]
    assert {(m["type"], m.get("source", ""), m["target"]) for m in mounts} == {
        ("volume", "mv", "/m"),
        ("bind", str(host), "/h"),
        ("tmpfs", "", "/t"),  # a --mount, shown as one (docker's HostConfig.Mounts), not as --tmpfs
    }

    # --volumes-from: the same volume and bind; :ro makes both read-only here
    out = platform.ok(
        "run",
        "--rm",
        "--volumes-from",
        "mnt:ro",
        "busybox",
        "sh",
        "-c",
        "cat /m/f /h/from-host; touch /m/x 2>&1 || true; test -e /t || echo no-tmpfs",
    )
    assert out.startswith("hi\nhost file\n") and "Read-only file system" in out and out.endswith("no-tmpfs\n")
    # without a mode it keeps each mount's own: the volume is writable
    platform.ok("run", "--rm", "--volumes-from", "mnt", "busybox", "sh", "-c", "echo more >> /m/f")
    assert platform.ok("exec", "mnt", "cat", "/m/f") == "hi\nmore\n"
    done = platform.cli("run", "--rm", "--volumes-from", "no-such-ctr", "busybox", "true")
    assert done.returncode == 125 and "no-such-ctr" in _one_error_line(done)
    platform.ok("rm", "-f", "mnt")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("type=volume,target=relative", "absolute"),
        ("type=nfs,target=/x", "mount type 'nfs'"),
        ("source=v", "target is required"),
        ("type=bind,target=/x", "needs a source"),
        ("type=tmpfs,target=/x,volume-nocopy", "volume-nocopy only goes with type=volume"),
        ("type=volume,target=/x,colour=red", "unexpected key 'colour'"),
        ("type=volume,source=/abs,target=/x", "use type=bind"),
        ("type=tmpfs,target=/x,tmpfs-size=lots", "tmpfs-size"),
    ],
)
def test_a_bad_mount_is_one_clear_line(platform: Platform, spec: str, says: str) -> None:
    done = platform.cli("run", "--rm", "--mount", spec, "busybox", "true")
    assert done.returncode == 125 and "--mount" in _one_error_line(done) and says in done.stderr


def test_bad_volume_names_and_missing_bind_sources_are_one_line(platform: Platform, workdir: Path) -> None:
    done = platform.cli("volume", "create", "no/slash")
    assert done.returncode == 1 and "invalid volume name" in _one_error_line(done)
    done = platform.cli(
        "run", "--rm", "--mount", f"type=bind,src={workdir}/missing,dst=/x", "busybox", "true"
    )
    assert done.returncode == 125 and "does not exist" in _one_error_line(done)


def test_cp_goes_through_the_containers_mounts(platform: Platform, workdir: Path) -> None:
    """`cp` into and out of a volume reaches the volume, as docker's does (it used to land under
    the mount in the rootfs: seen by nobody, then baked into an image by commit)."""
    payload = workdir / "payload"
    payload.write_text("through-the-mount\n")
    payload.chmod(0o644)
    platform.ok(
        "run", "-d", "--name", "cpvol", "-v", "cpdata:/data", "-v", "cpro:/ro:ro", "busybox", "sleep", "300"
    )
    try:
        platform.ok("cp", str(payload), "cpvol:/data/")
        assert platform.ok("exec", "cpvol", "cat", "/data/payload") == "through-the-mount\n"
        mountpoint = Path(str(_inspect(platform, "cpdata")["Mountpoint"]))
        assert (mountpoint / "payload").read_text() == "through-the-mount\n"
        out = workdir / "out"
        out.mkdir(mode=0o777, exist_ok=True)
        platform.ok("cp", "cpvol:/data/payload", str(out / "one"))
        assert (out / "one").read_text() == "through-the-mount\n"
        platform.ok("cp", "cpvol:/data", str(out / "tree"))  # the mount point itself, under its name
        assert (out / "tree" / "payload").read_text() == "through-the-mount\n"
        refused = platform.cli("cp", str(payload), "cpvol:/ro/")
        assert refused.returncode != 0 and "read-only" in refused.stderr, refused.stderr
        # nothing went under the mount into the container's own layer
        platform.ok("stop", "-t", "0", "cpvol")
        assert "/data/payload" not in platform.ok("diff", "cpvol")
    finally:
        platform.cli("rm", "-f", "-v", "cpvol")
        platform.cli("volume", "rm", "cpdata", "cpro")


def test_system_df_counts_volumes_and_the_build_cache(platform: Platform, workdir: Path) -> None:
    """`system df` has docker's Local Volumes and Build Cache rows, with what they really hold."""

    def rows() -> dict[str, dict[str, str]]:
        out = platform.ok("system", "df", "--format", "json")
        return {r["Type"]: r for r in map(json.loads, out.splitlines())}

    before = rows()
    platform.ok("volume", "create", "df-data")
    platform.ok(
        "run", "--rm", "-v", "df-data:/d", "busybox", "dd", "if=/dev/zero", "of=/d/f", "bs=1M", "count=3"
    )
    ctx = workdir / "df-build"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/cache,id=df-cache dd if=/dev/zero of=/cache/c bs=1M count=2\n"
    )
    ctx.chmod(0o755)
    (ctx / "Dockerfile").chmod(0o644)
    platform.ok("build", "-q", str(ctx), timeout=180)
    after = rows()
    volumes, cache = after["Local Volumes"], after["Build Cache"]
    assert int(volumes["TotalCount"]) == int(before["Local Volumes"]["TotalCount"]) + 1
    assert int(cache["TotalCount"]) == int(before["Build Cache"]["TotalCount"]) + 1
    assert volumes["Active"] == "0" and re.match(r"3(\.\d+)?MB", volumes["Size"]), volumes  # nothing uses it
    assert volumes["Reclaimable"].startswith(volumes["Size"]), volumes
    assert re.match(r"2(\.\d+)?MB", cache["Size"]), cache
    verbose = platform.ok("system", "df", "-v")
    assert re.search(r"df-data\s+0\s+3", verbose) and "Build cache usage" in verbose, verbose
    platform.ok("volume", "rm", "df-data")
