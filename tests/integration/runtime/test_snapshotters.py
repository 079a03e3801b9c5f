"""The snapshotters as the unprivileged ``dockyard`` user, inside the node's user namespace.

This is the rootless proof: a script run with ``runuser -u dockyard`` re-executes itself inside the
node namespace (:func:`dockyard.runtime.userns.reexec_inside`, a pause process holding it), builds
two layers there (a file owned by uid 33, a whiteout device, an opaque dir), prepares a rootfs with
each snapshotter, changes it, and writes the diff and the layer tar. The test checks them as root
from outside: the tar's whiteout and ownership, and the host ids the namespace mapped them to.

Needs root to switch user (CI runs as root) and the user, subids and /dev/fuse from ``make setup``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.rootless,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as the dockyard user"),
]

USER = os.environ.get("DOCKYARD_USER", "dockyard")

SCRIPT = r"""
import io, json, os, shutil, stat, sys
from pathlib import Path
from dockyard.runtime import userns

state, work, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if not userns.in_node_namespace():
    userns.reexec_inside(state, [sys.executable, __file__, *sys.argv[1:]])

from dockyard.runtime.snapshot import CopySnapshotter, FuseOverlaySnapshotter, OverlaySnapshotter

base = work / kind
l1, l2 = base / "l1", base / "l2"
(l1 / "etc").mkdir(parents=True)
(l1 / "etc" / "passwd").write_text("root")
(l1 / "www").mkdir()
(l1 / "www" / "index.html").write_text("hi")
os.chown(l1 / "www" / "index.html", 33, 33)
(l1 / "o").mkdir()
(l1 / "o" / "old").write_text("old")
(l1 / "gone").write_text("g")
(l2 / "o").mkdir(parents=True)
os.setxattr(l2 / "o", "user.overlay.opaque", b"y")
os.mknod(l2 / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
lowers = [l1, l2]

kinds = {"overlay": OverlaySnapshotter, "fuse-overlayfs": FuseOverlaySnapshotter, "copy": CopySnapshotter}
snaps = kinds[kind](base / "snapshots")
m = snaps.prepare("c1", lowers)
seen = sorted(str(p.relative_to(m)) for p in m.rglob("*"))
mounted = snaps.is_mounted("c1")
os.unlink(m / "etc" / "passwd")
(m / "www" / "new.html").write_text("new")
os.chown(m / "www" / "new.html", 33, 33)
with open(m / "www" / "index.html", "a") as f:
    f.write("!")
out = work / f"{kind}.tar"
with open(out, "wb") as f:
    digest, size = snaps.write_layer("c1", lowers, f)
result = {
    "uid": os.getuid(),
    "seen": seen,
    "mounted": mounted,
    "changes": [str(c) for c in snaps.changes("c1", lowers)],
    "digest": digest,
    "size": size,
    "index_uid_inside": os.lstat(m / "www" / "index.html").st_uid,
}
snaps.unmount("c1")
result["mounted_after_unmount"] = snaps.is_mounted("c1")
snaps.remove("c1")
result["removed"] = not (base / "snapshots" / "c1").exists()
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        pytest.fail(f"user {USER!r} does not exist: run `make setup` (deploy/setup/host.sh) as root")
    d = Path(tempfile.mkdtemp(prefix="dockyard-snap-"))
    (d / "state").mkdir()
    (d / "snap_script.py").write_text(SCRIPT)
    for p in (d, d / "state", d / "snap_script.py"):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    try:
        yield d
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((d / "state" / "pause.pid").read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def _run(work: Path, kind: str) -> dict[str, Any]:
    p = subprocess.run(
        [
            "runuser",
            "-u",
            USER,
            "--",
            sys.executable,
            str(work / "snap_script.py"),
            str(work / "state"),
            str(work),
            kind,
        ],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["overlay", "fuse-overlayfs", "copy"])
def test_rootless_snapshot_diff_and_layer(work: Path, kind: str) -> None:
    r = _run(work, kind)
    assert r["uid"] == 0  # root of the node namespace, not of the host
    assert r["seen"] == ["etc", "etc/passwd", "o", "www", "www/index.html"]  # whiteout, opaque applied
    assert r["mounted"]
    if kind != "copy":  # a copy has nothing to unmount
        assert not r["mounted_after_unmount"]
    assert r["removed"]
    assert r["changes"] == ["C /etc", "D /etc/passwd", "C /www", "C /www/index.html", "A /www/new.html"]
    assert r["index_uid_inside"] == 33
    with tarfile.open(work / f"{kind}.tar") as tf:
        members = {t.name: t for t in tf}
    assert set(members) == {"etc", "etc/.wh.passwd", "www", "www/index.html", "www/new.html"}
    assert members["etc/.wh.passwd"].isreg() and members["etc/.wh.passwd"].size == 0
    for name in ("www/index.html", "www/new.html"):
        assert (members[name].uid, members[name].gid, members[name].uname) == (33, 33, "")
    assert (work / f"{kind}.tar").stat().st_size == r["size"]
    # outside, the layer's uid-33 file belongs to the user's subordinate id for 33
    first_subuid = int(
        next(ln for ln in Path("/etc/subuid").read_text().splitlines() if ln.startswith(USER + ":")).split(
            ":"
        )[1]
    )
    assert (work / kind / "l1" / "www" / "index.html").stat().st_uid == first_subuid + 33 - 1
