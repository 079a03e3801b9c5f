"""tests/conformance/build.sh on a clone alone: the pinned sources are fetched and their tree hash
checked; a download that is not the pinned tree is refused and leaves nothing behind.

The "network" is a loopback HTTP server laid out like GitHub's codeload
(``/<owner>/<repo>/tar.gz/<commit>``), pointed at with ``CONFORMANCE_FETCH_BASE``.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "conformance" / "build.sh"
CACHED_SRC = REPO / ".cache" / "conformance" / "src"
TARBALLS = ("distribution-spec-v1.1.1.tar.gz", "reggie-v0.6.1.tar.gz")


def pinned(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", BUILD.read_text(), re.MULTILINE)
    assert found, name
    return found.group(1)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def publish(root: Path, repo: str, commit: str, tarball: Path) -> None:
    where = root / repo / "tar.gz"
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(tarball, where / commit)


def sources_only(base: str, src: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONFORMANCE_FETCH_BASE": base,
        "CONFORMANCE_SRC_DIR": str(src),
        "CONFORMANCE_CACHE_DIR": str(cache),
    }
    # Run from a copy of the script, so no shared/ folder is beside it: the clone-alone case.
    alone = cache.parent / "clone" / "tests" / "conformance"
    alone.mkdir(parents=True)
    shutil.copy(BUILD, alone / "build.sh")
    return subprocess.run(
        ["bash", str(alone / "build.sh"), "--sources-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_pinned_sources_are_fetched_when_absent(mirror: tuple[str, Path], tmp_path: Path) -> None:
    if not all((CACHED_SRC / t).exists() for t in TARBALLS):
        pytest.fail("run tests/conformance/build.sh first (make test does): it caches the pinned tarballs")
    base, root = mirror
    publish(root, "opencontainers/distribution-spec", pinned("DIST_SPEC_COMMIT"), CACHED_SRC / TARBALLS[0])
    publish(root, "bloodorangeio/reggie", pinned("REGGIE_COMMIT"), CACHED_SRC / TARBALLS[1])
    src = tmp_path / "src"
    done = sources_only(base, src, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "tree hash verified" in done.stderr
    for name in TARBALLS:
        assert (src / name).read_bytes() == (CACHED_SRC / name).read_bytes()


def test_a_download_that_is_not_the_pinned_tree_is_refused(mirror: tuple[str, Path], tmp_path: Path) -> None:
    base, root = mirror
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tf:
        data = b"package conformance // not the pinned source\n"
        info = tarfile.TarInfo("distribution-spec-x/conformance/setup.go")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    publish(root, "opencontainers/distribution-spec", pinned("DIST_SPEC_COMMIT"), forged)
    src = tmp_path / "src"
    done = sources_only(base, src, tmp_path / "cache")
    assert done.returncode != 0
    assert "is not the pinned source" in done.stderr and "refused" in done.stderr
    assert not any(src.iterdir()), "a refused download must not stay in the source folder"
