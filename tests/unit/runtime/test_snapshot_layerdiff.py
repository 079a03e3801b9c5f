"""layerdiff on hand-made uppers in each overlay's own format, a 100 MB layer, and docker cp.

The uppers are built the way kernel overlay and fuse-overlayfs 1.10 leave them (seen on this host):
kernel — whiteouts as char 0:0 sharing one inode, ``user.overlay.opaque``; fuse-overlayfs — on a
new or opaque dir a ``.wh..wh..opq`` file, a ``.wh..opq`` 0:0 device, ``user.fuseoverlayfs.opaque``.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import time
from pathlib import Path

import pytest
from snapshot_test_support import make_layers, whiteout

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.runtime.layerdiff import changes, tar_path, untar_into, write_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are device nodes: needs root")


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return list(tf)


def _kernel_upper(base: Path) -> Path:
    up = base / "upper"
    (up / "d").mkdir(parents=True)
    whiteout(up / "d" / "a")
    os.link(up / "d" / "a", up / "hl1")  # kernel overlay reuses one whiteout inode
    (up / "o").mkdir()
    os.setxattr(up / "o", "user.overlay.opaque", b"y")
    (up / "o" / "z").write_text("z")
    (up / "keep").mkdir()
    (up / "keep" / "k").write_text("changed")
    (up / "nd").mkdir()
    (up / "nd" / "f").write_text("1")
    return up


def _fuse_upper(base: Path) -> Path:
    up = base / "upper"
    (up / "d").mkdir(parents=True)
    whiteout(up / "d" / "a")
    (up / ".wh.hl1").touch()  # its fallback whiteout, where it cannot make a device
    for d in ("o", "nd"):
        (up / d).mkdir()
        (up / d / ".wh..wh..opq").touch()
        whiteout(up / d / ".wh..opq")
        os.setxattr(up / d, "user.fuseoverlayfs.opaque", b"y")
    (up / "o" / "z").write_text("z")
    (up / "keep").mkdir()
    (up / "keep" / "k").write_text("changed")
    (up / "nd" / "f").write_text("1")
    return up


EXPECTED = [
    "C /d",
    "D /d/a",
    "D /hl1",
    "C /keep",
    "C /keep/k",
    "A /nd",
    "A /nd/f",
    "C /o",
    "D /o/y",
    "A /o/z",
]
LAYER = ["d/", "d/.wh.a", ".wh.hl1", "keep/", "keep/k", "nd/", "nd/f", "o/", "o/.wh..wh..opq", "o/z"]


@pytest.mark.parametrize("make_upper", [_kernel_upper, _fuse_upper], ids=["kernel", "fuse"])
def test_both_overlay_formats_give_the_same_diff_and_layer(tmp_path: Path, make_upper: object) -> None:
    lowers = make_layers(tmp_path)
    up = make_upper(tmp_path)  # type: ignore[operator]
    assert [str(c) for c in changes(up, lowers)] == EXPECTED
    out = io.BytesIO()
    digest, size = write_layer(up, lowers, out)
    data = out.getvalue()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    members = _members(data)
    names = [m.name + ("/" if m.isdir() else "") for m in members]
    assert sorted(names) == sorted(LAYER)
    assert names.index("o/.wh..wh..opq") == names.index("o/") + 1  # the marker before the dir's contents
    assert all(m.isreg() and m.size == 0 for m in members if ".wh." in m.name)  # not hard links


def test_layer_is_deterministic_keeps_ids_links_and_skips_sockets(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "b" / "c").mkdir(parents=True)
    (up / "a").write_bytes(b"x" * 1000)
    os.chown(up / "a", 33, 33)
    os.utime(up / "a", (1_600_000_000, 1_600_000_000))
    os.link(up / "a", up / "b" / "c" / "link")
    os.symlink("../a", up / "b" / "sym")
    os.mkfifo(up / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(up / "sock"))
        one, two = io.BytesIO(), io.BytesIO()
        write_layer(up, [], one)
        write_layer(up, [], two)
    assert one.getvalue() == two.getvalue()
    m = {t.name: t for t in _members(one.getvalue())}
    assert list(m) == ["a", "b", "b/c", "b/c/link", "b/sym", "fifo"]
    assert (m["a"].uid, m["a"].gid, m["a"].uname, m["a"].gname, m["a"].mtime) == (
        33,
        33,
        "",
        "",
        1_600_000_000,
    )
    assert m["b/c/link"].islnk() and m["b/c/link"].linkname == "a"
    assert m["b/sym"].issym() and m["b/sym"].linkname == "../a"
    assert m["fifo"].isfifo()
    with tarfile.open(fileobj=io.BytesIO(one.getvalue())) as tf:
        f = tf.extractfile("a")
        assert f is not None and f.read() == b"x" * 1000


def test_a_100_mb_upper_streams(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    up.mkdir()
    block = os.urandom(1 << 20)
    with open(up / "big", "wb") as f:
        for _ in range(100):
            f.write(block)
    for i in range(1000):
        (up / f"small{i}").write_bytes(block[: 100 + i])
    sink = tmp_path / "layer.tar"
    with open(sink, "wb") as out:
        t = time.perf_counter()
        digest, size = write_layer(up, [], out)
        took = time.perf_counter() - t
    print(f"\nwrite_layer: {size / 1e6:.0f} MB (1 big + 1000 small files) in {took * 1000:.0f} ms")
    h = hashlib.sha256()
    with open(sink, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert digest == "sha256:" + h.hexdigest() and size == sink.stat().st_size > 100 << 20
    assert took < 5


# --- docker cp ------------------------------------------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("inside")
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "sub" / "f").write_text("f")
    os.symlink("/etc", root / "abs")  # absolute: means <root>/etc, never the host's
    os.symlink("../../../../../../../../etc", root / "dots")
    os.symlink("/etc/hostname", root / "data" / "h")
    return root


def _cp_out(root: Path, path: str) -> dict[str, bytes | None]:
    out = io.BytesIO()
    tar_path(root, path, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        return {m.name: (f.read() if m.isreg() and (f := tf.extractfile(m)) else None) for m in tf}


def test_cp_out_resolves_symlinks_inside_the_rootfs(rootfs: Path) -> None:
    assert _cp_out(rootfs, "/abs/hostname") == {"hostname": b"inside"}
    assert _cp_out(rootfs, "dots/hostname") == {"hostname": b"inside"}
    assert _cp_out(rootfs, "/../../etc/hostname") == {"hostname": b"inside"}
    assert list(_cp_out(rootfs, "/data")) == ["data", "data/h", "data/sub", "data/sub/f"]
    assert list(_cp_out(rootfs, "/data/.")) == ["h", "sub", "sub/f"]
    assert list(_cp_out(rootfs, "/abs")) == ["abs"]  # the link itself
    assert list(_cp_out(rootfs, "/abs/")) == ["abs", "abs/hostname"]  # followed
    with pytest.raises(NotFound):
        _cp_out(rootfs, "/nope")


def _tar(*members: tuple[str, bytes | None, str]) -> list[bytes]:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data, kind in members:
            t = tarfile.TarInfo(name)
            if kind == "sym":
                t.type, t.linkname = tarfile.SYMTYPE, (data or b"").decode()
                tf.addfile(t)
            elif kind == "chr":
                t.type, t.devmajor, t.devminor = tarfile.CHRTYPE, 1, 3
                tf.addfile(t)
            elif kind == "dir":
                t.type = tarfile.DIRTYPE
                tf.addfile(t)
            else:
                t.size = len(data or b"")
                tf.addfile(t, io.BytesIO(data or b""))
    raw = out.getvalue()
    return [raw[i : i + 700] for i in range(0, len(raw), 700)]


def test_cp_in_extracts_inside_and_never_through_a_link_out(rootfs: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (rootfs / victim.relative_to("/")).mkdir(parents=True)  # the same path inside the container
    n = untar_into(
        rootfs,
        "/abs",  # a symlink to /etc: resolved inside the rootfs
        _tar(
            ("new", None, "dir"),
            ("new/file", b"hello", "file"),
            ("new/out", str(victim).encode(), "sym"),  # a link to the host's victim dir...
            ("new/out/pwned", b"x", "file"),  # ...then a file through it
            ("null", None, "chr"),
        ),
    )
    assert (rootfs / "etc" / "new" / "file").read_text() == "hello"
    assert os.readlink(rootfs / "etc" / "new" / "out") == str(victim)
    assert list(victim.iterdir()) == []  # nothing written on the host
    assert (rootfs / victim.relative_to("/") / "pwned").read_text() == "x"  # went inside the rootfs
    assert not (rootfs / "etc" / "null").exists()  # no device nodes
    assert n == 4
    # where the link's target does not exist inside, the member fails: nothing is made outside
    with pytest.raises(NotFound):
        untar_into(rootfs, "/", _tar(("l", b"/gone-dir", "sym"), ("l/x", b"x", "file")))
    assert not Path("/gone-dir").exists()


def test_cp_in_refuses_dotdot_and_a_missing_destination(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument):
        untar_into(rootfs, "/data", _tar(("../../escape", b"x", "file")))
    assert not (rootfs.parent / "escape").exists()
    with pytest.raises(NotFound):
        untar_into(rootfs, "/nope", _tar(("f", b"x", "file")))
    with pytest.raises(InvalidArgument):
        untar_into(rootfs, "/data", [b"not a tar at all" * 100])


def test_cp_in_replaces_a_symlink_instead_of_writing_through_it(rootfs: Path) -> None:
    untar_into(rootfs, "/data", _tar(("h", b"replaced", "file")))
    assert (rootfs / "data" / "h").read_text() == "replaced" and not (rootfs / "data" / "h").is_symlink()
    assert (rootfs / "etc" / "hostname").read_text() == "inside"
