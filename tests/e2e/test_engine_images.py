"""End to end: the docker CLI's image verbs and its legacy builder against `dockyard up`'s Engine API.

The platform and the docker CLI run as the unprivileged user; images go to and come from the
platform's own registry; ``DOCKER_BUILDKIT=0`` makes ``docker build`` use ``POST /build``.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import re
import socket
import tarfile
import urllib.parse
from pathlib import Path

import pytest
from build_helpers import build_context
from docker_cli import DOCKER, Docker
from e2e_platform import Platform, busybox_fixtures

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is installed by `make setup`")


workdir, platform = busybox_fixtures("engine-images")


@pytest.fixture(scope="module")
def docker(platform: Platform, workdir: Path) -> Docker:
    client = Docker(platform, workdir)
    client.env["DOCKER_BUILDKIT"] = "0"  # the legacy builder: POST /build, without buildx
    return client


def test_tag_push_and_pull_back_from_the_registry(docker: Docker, platform: Platform) -> None:
    image = f"{platform.registry_http}/lab/busybox:1"
    docker.ok("tag", "busybox", image)
    listed = docker.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").splitlines()
    ids = {line.split()[0]: line.split()[1] for line in listed}
    assert ids[image] == ids["busybox:latest"], listed
    pushed = docker("push", image)
    assert pushed.returncode == 0, pushed.stderr
    assert re.search(r"^1: digest: sha256:[0-9a-f]{64} size: \d+$", pushed.stdout, re.M), pushed.stdout
    assert "The push refers to repository" in pushed.stdout
    removed = docker.ok("rmi", image)
    assert f"Untagged: {image}" in removed, removed
    pulled = docker("pull", image)
    assert pulled.returncode == 0, pulled.stderr
    assert "1: Pulling from lab/busybox" in pulled.stdout, pulled.stdout
    assert re.search(r"^Digest: sha256:[0-9a-f]{64}$", pulled.stdout, re.M), pulled.stdout
    assert "Status: " in pulled.stdout and pulled.stdout.strip().endswith(image), pulled.stdout
    assert docker.ok("run", "--rm", image, "echo", "pulled") == "pulled\n"
    # docker run of a missing image pulls it itself (POST /images/create), then runs it
    docker.ok("rmi", image)
    ran = docker("run", "--rm", image, "echo", "pulled by run")
    assert (ran.returncode, ran.stdout) == (0, "pulled by run\n"), ran.stderr
    # push --all-tags: every tag of the repository
    many = f"{platform.registry_http}/lab/many"
    docker.ok("tag", "busybox", f"{many}:a")
    docker.ok("tag", "busybox", f"{many}:b")
    every = docker.ok("push", "--all-tags", many)
    assert re.search(r"^a: digest: sha256:", every, re.M) and re.search(r"^b: digest: sha256:", every, re.M)
    # a push of a tag the node lacks, a pull of one the registry lacks: docker's errors, exit 1
    missing = docker("push", f"{platform.registry_http}/lab/nosuch:1")
    assert missing.returncode == 1, missing.stdout
    absent = docker("pull", f"{platform.registry_http}/lab/nosuch:1")
    assert absent.returncode == 1 and absent.stderr.strip(), absent


def test_history_rmi_and_no_such_image(docker: Docker) -> None:
    history = docker.ok("history", "--format", "{{.ID}}|{{.CreatedBy}}", "busybox").splitlines()
    assert history and all("|" in line for line in history), history
    assert docker.ok("history", "-q", "busybox").strip()
    docker.ok("tag", "busybox", "doomed:1")
    assert "doomed:1" in docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert "Untagged: doomed:1" in docker.ok("rmi", "doomed:1")
    assert "doomed" not in docker.ok("images", "--format", "{{.Repository}}")
    gone = docker("rmi", "nosuch-image:1")
    assert gone.returncode == 1 and "No such image" in gone.stderr, gone.stderr
    nohistory = docker("history", "nosuch-image:1")
    assert nohistory.returncode == 1 and "No such image" in nohistory.stderr, nohistory.stderr
    assert docker.ok("search", "busybox").split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert "Total reclaimed space" in docker.ok("image", "prune", "-f")


def test_save_then_load_round_trip(docker: Docker, workdir: Path) -> None:
    docker.ok("tag", "busybox", "saved:1")
    archive = workdir / "saved.tar"
    docker.ok("save", "-o", str(archive), "saved:1")
    assert archive.stat().st_size > 100_000
    docker.ok("rmi", "saved:1")
    loaded = docker.ok("load", "-i", str(archive))
    assert "Loaded image: saved:1" in loaded, loaded
    assert docker.ok("run", "--rm", "saved:1", "echo", "loaded") == "loaded\n"
    missing = docker("save", "-o", str(workdir / "none.tar"), "nosuch-image:1")
    assert missing.returncode == 1 and "No such image" in missing.stderr, missing.stderr


def test_import_from_stdin(docker: Docker, workdir: Path) -> None:
    done = docker("import", "-c", 'CMD ["echo", "imported"]', str(workdir / "busybox.tar"), "imported:1")
    assert done.returncode == 0 and done.stdout.startswith("sha256:"), done
    assert docker.ok("run", "--rm", "imported:1") == "imported\n"


def test_commit_a_container_and_run_the_image(docker: Docker) -> None:
    docker.ok("run", "--name", "tocommit", "busybox", "sh", "-c", "echo committed > /stamp")
    try:
        image_id = docker.ok(
            "commit", "-c", 'CMD ["cat", "/stamp"]', "-m", "a stamp", "tocommit", "committed:1"
        ).strip()
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id), image_id
    finally:
        docker.ok("rm", "-f", "tocommit")
    assert docker.ok("run", "--rm", "committed:1") == "committed\n"
    assert docker.ok("inspect", "-f", "{{.Id}}", "committed:1").strip() == image_id
    missing = docker("commit", "nosuch-container", "x:1")
    assert missing.returncode == 1 and "No such container" in missing.stderr, missing.stderr


def test_legacy_build_with_its_flags(docker: Docker, workdir: Path) -> None:
    ctx = build_context(
        workdir / "build-ctx",
        "FROM nosuch-image-the-build-never-reads\n",
        {
            "docker/app.Dockerfile": (
                "FROM busybox AS base\n"
                "ARG WHO=nobody\n"
                'RUN echo "hello $WHO" > /greeting\n'
                "COPY note.txt /note.txt\n"
                "FROM base AS final\n"
                'CMD ["cat", "/greeting", "/note.txt"]\n'
                "FROM busybox AS broken\n"
                "RUN exit 7\n"
            ),
            "note.txt": "from the context\n",
        },
    )
    done = docker(
        "build", "-t", "built:1", "-t", "built:also", "-f", str(ctx / "docker/app.Dockerfile"),
        "--build-arg", "WHO=docker", "--target", "final", "--label", "team=yard", str(ctx),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Step 1/" in done.stdout and " : FROM busybox" in done.stdout, done.stdout
    short = re.search(r"^Successfully built ([0-9a-f]{12})$", done.stdout, re.M)
    assert short, done.stdout
    assert "Successfully tagged built:1" in done.stdout and "Successfully tagged built:also" in done.stdout
    assert docker.ok("run", "--rm", "built:1") == "hello docker\nfrom the context\n"
    inspected = json.loads(docker.ok("inspect", "built:also"))[0]
    assert inspected["Id"].removeprefix("sha256:").startswith(short.group(1))
    assert inspected["Config"]["Labels"]["team"] == "yard"
    quiet = docker(
        "build", "-q", "-t", "built:1", "-f", str(ctx / "docker/app.Dockerfile"), str(ctx), timeout=300
    )
    assert quiet.returncode == 1, quiet.stdout  # no --target: the last stage, which fails


def test_a_failing_build_exits_1_with_the_error(docker: Docker, workdir: Path) -> None:
    ctx = build_context(workdir / "failing", "FROM busybox\nRUN echo before; exit 3\n")
    done = docker("build", "-t", "failed:1", str(ctx), timeout=300)
    assert done.returncode == 1, done.stdout
    assert "before" in done.stdout, done.stdout
    assert "exit 3" in done.stderr or "3" in done.stderr, done.stderr
    assert "failed" not in docker.ok("images", "--format", "{{.Repository}}")
    bad = build_context(workdir / "unparsable", "FROM busybox\nNOSUCHINSTRUCTION x\n")
    parsed = docker("build", str(bad), timeout=120)
    assert parsed.returncode == 1 and "NOSUCHINSTRUCTION" in parsed.stderr.upper(), parsed.stderr
    nofile = docker("build", "-f", "Missing.Dockerfile", str(bad), timeout=120)
    assert nofile.returncode == 1, nofile.stdout


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("docker", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


def _call(
    docker: Docker, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = _UnixHTTP(docker.socket)
    try:
        connection.request(method, "/v1.44" + path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info in members:
            content = data.get(info.name)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def _lines(body: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_the_api_refuses_bad_requests_in_dockers_shape(docker: Docker) -> None:
    """What the CLI never sends, straight to the socket: a 400 with docker's ``message``, or the
    stream's ``errorDetail`` once progress went out; never a 500."""
    dockerfile = b"FROM busybox\nCOPY . /ctx\n"
    status, body = _call(docker, "POST", "/build", _tar([_file("other")], {"other": b"x"}))
    assert status == 400 and b"Cannot locate specified Dockerfile: Dockerfile" in body, body
    status, body = _call(docker, "POST", "/build?dockerfile=../Dockerfile", _tar([_file("a")], {"a": b"x"}))
    assert status == 400 and json.loads(body)["message"].startswith("the Dockerfile"), body
    status, body = _call(docker, "POST", "/build", b"not a tar at all" * 64)
    assert status == 400 and b"not a tar" in body, body
    status, body = _call(docker, "POST", "/build?buildargs=notjson", b"")
    assert status == 400 and b"buildargs is not JSON" in body, body
    # a member below a symlink that leaves the context: the builder's context rules refuse it
    link = tarfile.TarInfo("etc")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc"
    escape = _tar(
        [_file("Dockerfile"), link, _file("etc/passwd")], {"Dockerfile": dockerfile, "etc/passwd": b"x"}
    )
    status, body = _call(docker, "POST", "/build?t=escaped:1", escape)
    assert status == 200, body
    last = _lines(body)[-1]
    assert "below a symlink" in str(last["error"]) and last["errorDetail"], body
    # gzip-compressed (docker build --compress): the build sees the plain context
    plain = _tar(
        [_file("Dockerfile"), _file("f")],
        {"Dockerfile": dockerfile + b'CMD ["cat", "/ctx/f"]\n', "f": b"zipped\n"},
    )
    status, body = _call(docker, "POST", "/build?t=zipped:1", gzip.compress(plain))
    assert status == 200 and _lines(body)[-1] == {"stream": "Successfully tagged zipped:1\n"}, body
    assert docker.ok("run", "--rm", "zipped:1") == "zipped\n"
    status, body = _call(docker, "POST", "/build", gzip.compress(plain)[:-40] + b"\xff" * 40)
    assert status == 400 and b"not valid gzip" in body, body
    # pulls and pushes
    assert _call(docker, "POST", "/images/create")[0] == 400
    status, body = _call(docker, "POST", "/images/create?fromSrc=http://example.invalid/x.tar")
    assert status == 400 and b"only fromSrc=-" in body, body
    status, body = _call(
        docker, "POST", "/images/busybox/push?tag=latest", headers={"X-Registry-Auth": "%%%"}
    )
    assert status == 400 and b"X-Registry-Auth" in body, body
    assert _call(docker, "POST", "/images/busybox/tag")[0] == 400
    status, body = _call(docker, "POST", "/images/prune?filters=" + urllib.parse.quote('{"until": ["1h"]}'))
    assert status == 400 and b"not supported" in body, body
    status, body = _call(docker, "POST", "/commit")
    assert status == 400 and b"container is required" in body, body
    status, body = _call(docker, "GET", "/images/get")
    assert status == 400 and b"names is required" in body, body
    status, body = _call(docker, "GET", "/images/search?term=busybox")
    assert (status, json.loads(body)) == (200, [])
    history = json.loads(_call(docker, "GET", "/images/busybox/history")[1])
    assert history[0]["Tags"] and "busybox:latest" in history[0]["Tags"], history
