"""End to end: COPY and ADD as docker does them, built with `dockyard build` as the unprivileged
user from busybox and checked by running the image — ADD of a tar.gz (extracted, owners kept),
ADD of a URL (served from 127.0.0.1 by this test; --checksum good and bad), COPY --from with a
wildcard, --chown by name, symbolic --chmod, --link; and each refusal is one clear line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from build_helpers import build_context as _context
from e2e_platform import Platform, busybox_platform, make_workdir

TOOL = b"#!/bin/sh\necho tool\n"
CHECKED = b"checked download\n"


class _Files(BaseHTTPRequestHandler):
    """Serves FILES; counts requests per path (a cached ADD --checksum must not ask again)."""

    files: dict[str, bytes] = {"/dl/tool.sh": TOOL, "/dl/checked.txt": CHECKED}
    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(Path(tmp_path_factory.mktemp("build-add-e2e", numbered=True)))


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with busybox_platform(workdir) as p:
        yield p


def _tar(entries: list[tuple[str, bytes, int, int, bytes, str]], gz: bool = True) -> bytes:
    """(name, type, mode, uid, data, linkname) → a tar (gzip'ed), with times far from the epoch."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, mode, uid, data, link in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 1_600_000_000
            info.size, info.linkname = len(data), link
            tf.addfile(info, io.BytesIO(data) if data else None)
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def _stat(platform: Platform, image: str, *paths: str) -> dict[str, str]:
    """path → "mode uid:gid mtime" inside the image (busybox stat, in a container of it)."""
    out = platform.ok("run", "--rm", image, "stat", "-c", "%n %a %u:%g %Y", *paths)
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


APP = {
    "app.tar.gz": _tar(
        [
            ("app", tarfile.DIRTYPE, 0o750, 1000, b"", ""),
            ("app/run.sh", tarfile.REGTYPE, 0o755, 1000, b"#!/bin/sh\necho run\n", ""),
            ("app/data/x.txt", tarfile.REGTYPE, 0o640, 2000, b"x\n", ""),
            ("app/latest", tarfile.SYMTYPE, 0o777, 0, b"", "run.sh"),
        ]
    ),
    "out.tar": _tar(  # the first stage's files, added without a RUN (the build stays reproducible)
        [
            ("a.txt", tarfile.REGTYPE, 0o644, 33, b"a\n", ""),
            ("b.txt", tarfile.REGTYPE, 0o600, 0, b"b\n", ""),
            ("c.log", tarfile.REGTYPE, 0o644, 0, b"c\n", ""),
            ("sub/s.txt", tarfile.REGTYPE, 0o644, 0, b"s\n", ""),
        ],
        gz=False,
    ),
    "conf/app.conf": b"key=value\n",
    "conf/hooks/run": b"#!/bin/sh\n",
    "notes.txt": b"notes\n",
}


_Files.files["/dl/app.tgz"] = APP["app.tar.gz"]


def _dockerfile(url: str) -> str:
    checked = hashlib.sha256(CHECKED).hexdigest()
    return f"""\
FROM busybox AS build
ADD out.tar /out/
FROM busybox
ADD app.tar.gz /opt/
ADD --checksum=sha256:{checked} {url}/dl/checked.txt /srv/
ADD --chmod=755 {url}/dl/tool.sh /usr/local/bin/tool
ADD {url}/dl/tool.sh /dl/
ADD --unpack=true {url}/dl/app.tgz /unpacked/
ADD --unpack=false app.tar.gz /raw/
COPY --from=build /out/*.txt /dst/
COPY --chown=www-data:www-data --chmod=u=rwX,go=rX conf /etc/app/
COPY --link --chown=33 notes.txt /notes.txt
CMD ["tool"]
"""


def test_add_and_copy_like_docker(platform: Platform, workdir: Path, server: str) -> None:
    (workdir / "app" / "conf" / "hooks").mkdir(parents=True)
    ctx = _context(workdir / "app", _dockerfile(server), APP)
    (ctx / "conf" / "hooks" / "run").chmod(0o700)  # X keeps it executable; app.conf gets 644
    # the epoch pinned at 0 (the default is the base's time): every time below is clamped to it
    epoch = ("--build-arg", "SOURCE_DATE_EPOCH=0")
    done = platform.cli("build", *epoch, "-t", "added", "--progress", "plain", str(ctx), timeout=240)
    assert done.returncode == 0, done.stderr

    # the tar.gz was extracted, its owners and modes kept, its times clamped to the epoch (0)
    assert _stat(
        platform, "added", "/opt/app", "/opt/app/run.sh", "/opt/app/data/x.txt", "/opt/app/data"
    ) == {
        "/opt/app": "750 1000:1000 0",
        "/opt/app/run.sh": "755 1000:1000 0",
        "/opt/app/data/x.txt": "640 2000:2000 0",
        "/opt/app/data": "755 0:0 0",  # a parent the archive lacks, as tar -x makes it
    }
    assert platform.ok("run", "--rm", "added", "readlink", "/opt/app/latest") == "run.sh\n"
    assert platform.ok("run", "--rm", "added", "ls", "/opt") == "app\n"  # not copied as a file

    # URLs: saved as files (not extracted), 0600 unless --chmod, named from the URL into a dir
    assert _stat(platform, "added", "/srv/checked.txt", "/usr/local/bin/tool", "/dl/tool.sh") == {
        "/srv/checked.txt": "600 0:0 0",
        "/usr/local/bin/tool": "755 0:0 0",
        "/dl/tool.sh": "600 0:0 0",
    }
    assert platform.ok("run", "--rm", "added") == "tool\n"  # CMD runs the downloaded tool
    assert platform.ok("run", "--rm", "added", "cat", "/srv/checked.txt").encode() == CHECKED
    # --unpack turns the rules around: a URL's tar extracted, a local one copied as it is
    assert platform.ok("run", "--rm", "added", "ls", "/unpacked/app", "/raw") == (
        "/raw:\napp.tar.gz\n\n/unpacked/app:\ndata\nlatest\nrun.sh\n"
    )

    # COPY --from with a wildcard: the matches only, owners kept
    assert platform.ok("run", "--rm", "added", "ls", "/dst") == "a.txt\nb.txt\n"
    assert _stat(platform, "added", "/dst/a.txt", "/dst/b.txt") == {
        "/dst/a.txt": "644 33:33 0",
        "/dst/b.txt": "600 0:0 0",
    }

    # --chown by name (the image's /etc/passwd and /etc/group), symbolic --chmod, --link
    assert _stat(
        platform, "added", "/etc/app/app.conf", "/etc/app/hooks", "/etc/app/hooks/run", "/notes.txt"
    ) == {
        "/etc/app/app.conf": "644 33:33 0",
        "/etc/app/hooks": "755 33:33 0",
        "/etc/app/hooks/run": "755 33:33 0",
        "/notes.txt": "644 33:33 0",
    }
    listing = platform.ok("run", "--rm", "added", "ls", "-ln", "/etc/app")
    assert all(" 33 " in line for line in listing.splitlines()[1:]), listing

    # an unchanged rebuild is all cache hits, and the --checksum'ed URL is not even fetched
    hits = dict(_Files.hits)
    again = platform.cli("build", *epoch, "-t", "added", "--progress", "plain", str(ctx), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "(11/11 steps cached" in again.stderr, again.stderr
    assert _Files.hits["/dl/checked.txt"] == hits["/dl/checked.txt"]
    assert _Files.hits["/dl/tool.sh"] > hits["/dl/tool.sh"]  # without a checksum: fetched, hashed

    # reproducible: two clean builds give one image id
    ids = [platform.cli("build", "--no-cache", "-q", str(ctx), timeout=240) for _ in range(2)]
    assert all(i.returncode == 0 for i in ids), ids[-1].stderr
    assert ids[0].stdout == ids[1].stdout


@pytest.mark.parametrize(
    ("lines", "files", "error"),
    [
        (
            "ADD --checksum=sha256:" + "0" * 64 + " {url}/dl/checked.txt /srv/\n",
            {},
            "checksum mismatch: expected sha256:"
            + "0" * 64
            + ", got sha256:"
            + hashlib.sha256(CHECKED).hexdigest(),
        ),
        ("ADD {url}/dl/missing.bin /srv/\n", {}, "answered 404"),
        ("ADD git@github.com:moby/buildkit.git /src\n", {}, "git sources are not supported"),
        (
            "ADD evil.tgz /app/\n",
            {"evil.tgz": _tar([("../../etc/evil", tarfile.REGTYPE, 0o644, 0, b"x", "")])},
            "ADD evil.tgz: entry '../../etc/evil' leaves the destination",
        ),
        (
            "ADD link.tgz /app/\n",
            {
                "link.tgz": _tar(
                    [
                        ("etc", tarfile.SYMTYPE, 0o777, 0, b"", "/etc"),
                        ("etc/passwd", tarfile.REGTYPE, 0o644, 0, b"x", ""),
                    ]
                )
            },
            "is below a symlink of the archive",
        ),
        ("COPY --from=busybox /bin/*.nothing /x/\n", {}, 'no source files were specified: "/bin/*.nothing"'),
        ("COPY --chown=nobody f.txt /f\n", {"f.txt": b"f"}, "unknown user 'nobody'"),
        ("COPY --chown=www-data:wheel f.txt /f\n", {"f.txt": b"f"}, "unknown group 'wheel'"),
        ("COPY --chmod=u+q f.txt /f\n", {"f.txt": b"f"}, "--chmod=u+q: not an octal mode"),
    ],
    ids=["bad-checksum", "404", "git", "dotdot", "symlink", "glob-none", "user", "group", "chmod"],
)
def test_refusals_are_one_line_and_leave_no_image(
    platform: Platform, workdir: Path, server: str, lines: str, files: dict[str, bytes], error: str
) -> None:
    name = "refused-" + hashlib.sha256(lines.encode()).hexdigest()[:8]
    ctx = _context(workdir / name, "FROM busybox\n" + lines.replace("{url}", server), files)
    failed = platform.cli("build", "-t", name, "--progress", "plain", str(ctx), timeout=120)
    assert failed.returncode == 1, failed.stderr
    assert error in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert error in last, failed.stderr  # the CLI's last line says it, alone
    assert platform.cli("inspect", name).returncode != 0  # no image under that name


def test_workdir_makes_the_dir_like_buildkit(platform: Platform, workdir: Path) -> None:
    dockerfile = "FROM busybox\nWORKDIR /tmp\nWORKDIR /srv/app\nUSER www-data\nWORKDIR /home/www\nUSER root\n"
    ctx = _context(workdir / "workdir", dockerfile, {})
    done = platform.cli("build", "-t", "wd", str(ctx), timeout=120)
    assert done.returncode == 0, done.stderr
    assert _stat(platform, "wd", "/tmp", "/srv", "/srv/app", "/home", "/home/www") == {
        "/tmp": "1777 0:0 1700000000",  # there already: untouched, no layer
        "/srv": "755 0:0 0",
        "/srv/app": "755 0:0 0",
        "/home": "755 33:33 0",  # mkdir -p as the USER: every dir it makes is the user's
        "/home/www": "755 33:33 0",
    }
    config = json.loads(platform.ok("inspect", "--type", "image", "wd"))[0]["config"]
    made = {h["created_by"]: not h.get("empty_layer", False) for h in config["history"]}
    assert made["WORKDIR /tmp"] is False and made["WORKDIR /srv/app"] and made["WORKDIR /home/www"]
    assert len(config["rootfs"]["diff_ids"]) == sum(made.values())
