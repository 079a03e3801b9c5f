"""Cross-check: one Dockerfile built by rootless buildah and by Dockyard gives the same image.

Both start from the same busybox rootfs. Compared: the config fields a user sees (Env, Cmd,
Entrypoint, WorkingDir, ExposedPorts, Volumes, Labels, User) and the final filesystem — every
path with its kind, mode, owner and content — each side's image exported as an OCI archive and
flattened (layers applied with their whiteouts). Timestamps are not compared: Dockyard clamps
them to SOURCE_DATE_EPOCH by design, buildah keeps the build's clock.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from buildah_store import Buildah, Entry, flatten
from e2e_platform import Platform, busybox_platform, make_workdir

DOCKERFILE = """\
FROM busybox AS assets
RUN mkdir -p /out/css && echo 'body{}' > /out/css/site.css && echo built > /out/VERSION

FROM busybox
ENV APP_HOME=/srv/www PORT=8080
LABEL org.example.role=web org.example.tier="front end"
RUN mkdir -p /srv/www/static /var/log/web && echo '<h1>hi</h1>' > /srv/www/index.html \\
    && chown -R 33:33 /var/log/web && rm /var/www/index.html && ln -s /srv/www /web
COPY site/ /srv/www/static/
COPY site/about.html /web/about-copy.html
COPY start.sh /tmp/scripts/
COPY --chmod=755 start.sh /usr/local/bin/start.sh
COPY --from=assets /out/css /srv/www/static/css
COPY --chown=33:33 --from=assets /out/VERSION /srv/www/
WORKDIR /srv/www
VOLUME /var/log/web
EXPOSE 8080/tcp 8443
USER 33:33
ENTRYPOINT ["/usr/local/bin/start.sh"]
CMD ["httpd", "-f", "-p", "8080"]
"""
# Empty stubs of its RUN mounts that buildah 1.28 leaves in its layers (BuildKit and Dockyard do not).
BUILDAH_STUBS = {"/dev", "/proc", "/sys", "/run", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "ExposedPorts", "Volumes", "Labels", "User")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("build-buildah", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


@pytest.fixture(scope="module")
def buildah(workdir: Path, platform: Platform) -> Iterator[Buildah]:
    b = Buildah(workdir / "buildah")
    try:
        b.import_rootfs(workdir / "busybox.tar", "busybox")  # the tar busybox_platform imported
        yield b
    finally:
        b.cleanup()


def test_same_config_and_files_as_buildah(platform: Platform, buildah: Buildah, workdir: Path) -> None:
    ctx = workdir / "web"
    (ctx / "site").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "site" / "about.html").write_text("<p>about</p>\n")
    (ctx / "site" / "img").mkdir()
    (ctx / "site" / "img" / "logo.svg").write_text("<svg/>\n")
    (ctx / "start.sh").write_text('#!/bin/sh\nexec "$@"\n')
    for path in [ctx, *ctx.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    platform.ok("build", "-q", "-t", "web", str(ctx), timeout=300)
    buildah("bud", "--layers", "--isolation", "rootless", "--identity-label=false", "-t", "web", str(ctx))

    ours_archive = workdir / "ours.tar"
    platform.ok("save", "-o", str(ours_archive), "web", timeout=120)
    theirs_archive = workdir / "theirs.tar"
    buildah("push", "web", f"oci-archive:{theirs_archive}")

    our_config = _config(ours_archive)["config"]
    their_config = buildah.config("web")["config"]
    for field in FIELDS:
        assert our_config.get(field) == their_config.get(field), field

    our_files, their_files = flatten(ours_archive), flatten(theirs_archive)
    for stub in BUILDAH_STUBS - our_files.keys():
        if their_files.get(stub, ("",))[-1] in ("", EMPTY):
            their_files.pop(stub, None)
    assert our_files == their_files, _difference(our_files, their_files)
    # and the checks mean something: the files the build made are there
    assert our_files["/srv/www/static/css/site.css"][0] == "file"
    assert our_files["/usr/local/bin/start.sh"][1] == 0o755
    assert our_files["/srv/www/VERSION"][2:4] == (33, 33)
    assert "/var/www/index.html" not in our_files
    assert our_files["/tmp"][1] == 0o1777  # COPY into /tmp/scripts/ left /tmp as it was
    assert our_files["/srv/www/about-copy.html"][0] == "file"  # through the /web symlink
    assert our_files["/web"] == ("symlink", 0o777, 0, 0, "/srv/www")


def _config(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> bytes:
            return tar.extractfile("blobs/" + digest.replace(":", "/")).read()  # type: ignore[union-attr]

        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        return dict(json.loads(blob(manifest["config"]["digest"])))


def _difference(ours: dict[str, Entry], theirs: dict[str, Entry]) -> str:
    lines = [f"only ours: {p} {ours[p]}" for p in sorted(ours.keys() - theirs.keys())]
    lines += [f"only buildah: {p} {theirs[p]}" for p in sorted(theirs.keys() - ours.keys())]
    lines += [
        f"differs: {p} ours {ours[p]} buildah {theirs[p]}"
        for p in sorted(ours)
        if p in theirs and ours[p] != theirs[p]
    ]
    return "\n".join(lines[:60])
