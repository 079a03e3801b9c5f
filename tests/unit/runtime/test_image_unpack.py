"""unpack_layer against real tars, honest and hostile, unpacked as root like the runtime does."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from image_test_support import MTIME, TarBuilder, sha

from dockyard.core.errors import AlreadyExists, InvalidArgument
from dockyard.runtime.images.unpack import OPAQUE_XATTR, unpack_layer


def unpack(tmp_path: Path, data: bytes, **kw: str) -> Path:
    dest = tmp_path / "layer"
    unpack_layer(io.BytesIO(data), dest, **kw)
    return dest


def assert_nothing_left(tmp_path: Path) -> None:
    assert [p.name for p in tmp_path.iterdir() if p.name != "outside"] == []


def test_regular_tree_keeps_owner_mode_mtime_and_setuid(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .dir("./")
        .dir("bin", mode=0o755)
        .file("bin/su", b"#!su", mode=0o4755, uid=0, gid=0)
        .file("home/app/data", b"hello", mode=0o600, uid=1000, gid=1001)
        .dir("ro", mode=0o555)
        .file("ro/inner", b"x")
        .symlink("bin/sh", "/bin/busybox")
        .symlink("rel", "../../../outside")
        .fifo("run/fifo")
        .bytes()
    )
    dest = tmp_path / "layer"
    size = unpack_layer(io.BytesIO(data), dest)
    assert size == len(b"#!su") + len(b"hello") + 1
    su = os.lstat(dest / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime == MTIME
    app = os.lstat(dest / "home/app/data")
    assert (app.st_uid, app.st_gid, stat.S_IMODE(app.st_mode)) == (1000, 1001, 0o600)
    assert (dest / "home/app/data").read_bytes() == b"hello"
    ro = os.lstat(dest / "ro")
    assert stat.S_IMODE(ro.st_mode) == 0o555 and ro.st_mtime == MTIME  # applied after its child
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"  # absolute targets kept as written
    assert os.readlink(dest / "rel") == "../../../outside"
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)
    assert os.lstat(dest / "home").st_uid == 0  # implicit parents: root-owned
    assert_nothing_left_but(tmp_path, "layer")


def assert_nothing_left_but(tmp_path: Path, *names: str) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_gzip_and_path_input_and_diff_id(tmp_path: Path) -> None:
    plain = TarBuilder().file("a", b"A" * 5000).bytes()
    blob = tmp_path / "blob.gz"
    blob.write_bytes(gzip.compress(plain))
    dest = tmp_path / "layer"
    assert unpack_layer(blob, dest, diff_id=sha(plain)) == 5000
    assert (dest / "a").read_bytes() == b"A" * 5000


def test_wrong_diff_id_leaves_nothing(tmp_path: Path) -> None:
    plain = TarBuilder().file("a", b"A").bytes()
    with pytest.raises(InvalidArgument, match="diff id"):
        unpack(tmp_path, plain, diff_id=sha(b"other"))
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("name", "why"), [("../escape", "escapes"), ("a/../../escape", "escapes"), ("/abs", "absolute")]
)
def test_escaping_names_refused(tmp_path: Path, name: str, why: str) -> None:
    data = TarBuilder().file("ok", b"1").file(name, b"pwned").bytes()
    with pytest.raises(InvalidArgument, match=why) as err:
        unpack(tmp_path, data)
    assert name in str(err.value)
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert_nothing_left(tmp_path)


def test_write_through_symlink_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = TarBuilder().symlink("a", str(outside)).file("a/evil", b"pwned").bytes()
    with pytest.raises(InvalidArgument, match="a/evil"):
        unpack(tmp_path, data)
    assert list(outside.iterdir()) == []
    assert_nothing_left_but(tmp_path, "outside")


def test_write_through_relative_symlink_dir_refused(tmp_path: Path) -> None:
    data = TarBuilder().dir("d").symlink("d/up", "../../..").file("d/up/x", b"pwned").bytes()
    with pytest.raises(InvalidArgument, match="d/up/x"):
        unpack(tmp_path, data)
    assert_nothing_left(tmp_path)


def test_file_over_symlink_replaces_link_not_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"safe")
    data = TarBuilder().symlink("v", str(outside / "victim")).file("v", b"new").bytes()
    dest = unpack(tmp_path, data)
    assert (outside / "victim").read_bytes() == b"safe"
    assert not (dest / "v").is_symlink() and (dest / "v").read_bytes() == b"new"


def test_hardlink_outside_the_layer_refused(tmp_path: Path) -> None:
    data = TarBuilder().file("a", b"1").hardlink("passwd", "/etc/passwd").bytes()
    with pytest.raises(InvalidArgument, match="hardlink"):
        unpack(tmp_path, data)
    data = TarBuilder().hardlink("x", "../../etc/passwd").bytes()
    with pytest.raises(InvalidArgument, match="escapes"):
        unpack(tmp_path, data)
    assert_nothing_left(tmp_path)


def test_hardlink_through_symlink_refused(tmp_path: Path) -> None:
    # "s" is extracted but is a symlink to a directory: "s/passwd" is not a member of this layer
    data = TarBuilder().symlink("s", "/etc").hardlink("p", "s/passwd").bytes()
    with pytest.raises(InvalidArgument):
        unpack(tmp_path, data)
    assert_nothing_left(tmp_path)


def test_hardlink_within_layer(tmp_path: Path) -> None:
    data = TarBuilder().file("bin/busybox", b"BB", mode=0o755).hardlink("bin/ls", "bin/busybox").bytes()
    dest = tmp_path / "layer"
    assert unpack_layer(io.BytesIO(data), dest) == 2
    assert os.lstat(dest / "bin/ls").st_ino == os.lstat(dest / "bin/busybox").st_ino


def test_devices_skipped_fifo_kept(tmp_path: Path) -> None:
    data = (
        TarBuilder().device("dev/null").device("dev/sda", tarfile.BLKTYPE).fifo("f").file("ok", b"1").bytes()
    )
    dest = unpack(tmp_path, data)
    assert not (dest / "dev/null").exists() and not (dest / "dev/sda").exists()
    assert stat.S_ISFIFO(os.lstat(dest / "f").st_mode)


def test_ids_beyond_the_namespace_refused(tmp_path: Path) -> None:
    data = TarBuilder().file("big", b"1", uid=70000).bytes()
    with pytest.raises(InvalidArgument, match=r"'big'.*70000"):
        unpack(tmp_path, data)
    assert_nothing_left(tmp_path)


def test_whiteouts_become_overlay_format(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .dir("etc")
        .file("etc/.wh.passwd")
        .dir("var/cache")
        .file("var/cache/.wh..wh..opq")
        .file("var/cache/new", b"n")
        .file("usr/.wh..wh.plnk", b"")
        .bytes()
    )
    dest = unpack(tmp_path, data)
    wh = os.lstat(dest / "etc/passwd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert not (dest / "etc/.wh.passwd").exists()
    assert os.getxattr(dest / "var/cache", OPAQUE_XATTR) == b"y"
    assert not (dest / "var/cache/.wh..wh..opq").exists()
    assert (dest / "var/cache/new").read_bytes() == b"n"
    assert list((dest / "usr").iterdir()) == []


def test_xattrs_only_user_and_never_overlay_ones(tmp_path: Path) -> None:
    data = (
        TarBuilder()
        .file(
            "f",
            b"1",
            xattrs={
                "user.mime": "text/plain",
                "user.overlay.redirect": "/etc",
                "trusted.overlay.opaque": "y",
                "security.selinux": "x",
            },
        )
        .bytes()
    )
    dest = unpack(tmp_path, data)
    assert os.listxattr(dest / "f") == ["user.mime"]
    assert os.getxattr(dest / "f", "user.mime") == b"text/plain"


def test_later_member_replaces_earlier(tmp_path: Path) -> None:
    data = TarBuilder().file("x/y", b"1").file("x", b"file now").dir("z").dir("z", mode=0o700).bytes()
    dest = unpack(tmp_path, data)
    assert (dest / "x").read_bytes() == b"file now"
    assert stat.S_IMODE(os.lstat(dest / "z").st_mode) == 0o700


@pytest.mark.parametrize("data", [b"not a tar at all" * 40, b"\x1f\x8bgarbage", b"\x28\xb5\x2f\xfd...."])
def test_garbage_is_invalid_argument(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        unpack(tmp_path, data)
    assert_nothing_left(tmp_path)


def test_truncated_tar_leaves_nothing(tmp_path: Path) -> None:
    data = TarBuilder().file("a", b"A" * 10000).file("b", b"B").bytes()
    with pytest.raises(InvalidArgument):
        unpack(tmp_path, data[:3000])
    assert_nothing_left(tmp_path)


def test_empty_layer_and_existing_dest(tmp_path: Path) -> None:
    dest = unpack(tmp_path, TarBuilder().bytes())
    assert list(dest.iterdir()) == []
    with pytest.raises(AlreadyExists):
        unpack_layer(io.BytesIO(TarBuilder().bytes()), dest)
