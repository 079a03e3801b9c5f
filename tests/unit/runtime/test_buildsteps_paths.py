"""Paths of an image read from its unpacked layers (overlay form): what StatPaths answers the builder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.runtime.buildsteps import resolve_in_layers
from dockyard.runtime.images.unpack import OPAQUE_XATTR
from dockyard.runtime.layerdiff import LowerView


def _layers(tmp_path: Path, n: int) -> list[Path]:
    dirs = [tmp_path / f"l{i}" for i in range(n)]
    for d in dirs:
        d.mkdir()
    return dirs


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def test_upper_layer_wins_and_whiteouts_hide(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a whiteout is a 0:0 character device: mknod needs root")
    low, high = _layers(tmp_path, 2)
    (low / "srv" / "www").mkdir(parents=True)
    (low / "gone" / "deep").mkdir(parents=True)
    (high / "srv").mkdir(mode=0o750)
    os.chmod(high / "srv", 0o750)
    _whiteout(high / "gone")
    lowers = [low, high]  # bottom first

    srv = lookup_in_layers(lowers, "srv")
    assert srv is not None and stat.S_IMODE(srv.st_mode) == 0o750  # the upper copy
    assert lookup_in_layers(lowers, "srv/www") is not None  # only in the lower: still there
    assert lookup_in_layers(lowers, "gone") is None
    assert lookup_in_layers(lowers, "gone/deep") is None  # its parent was whited out
    assert lookup_in_layers(lowers, "missing") is None


def test_opaque_directory_hides_what_is_below(tmp_path: Path) -> None:
    low, high = _layers(tmp_path, 2)
    (low / "etc" / "old").mkdir(parents=True)
    (high / "etc").mkdir()
    (high / "etc" / "new").write_text("x")
    try:
        os.setxattr(high / "etc", OPAQUE_XATTR, b"y")
    except OSError as exc:
        pytest.skip(f"no user xattrs here: {exc}")
    lowers = [low, high]
    assert lookup_in_layers(lowers, "etc/new") is not None
    assert lookup_in_layers(lowers, "etc/old") is None


def test_symlinks_followed_inside_the_root(tmp_path: Path) -> None:
    low, high = _layers(tmp_path, 2)
    (low / "usr" / "bin").mkdir(parents=True)
    (low / "bin").symlink_to("usr/bin")
    (high / "web").symlink_to("/usr/bin")
    (high / "up").symlink_to("../../../../usr")  # cannot climb above the root
    (high / "loop").symlink_to("loop")
    lowers = [low, high]

    def resolved(path: str) -> str | None:
        found = resolve_in_layers(lowers, path)
        return found[0] if found else None

    assert resolved("/bin") == "/usr/bin"
    assert resolved("/web") == "/usr/bin"
    assert resolved("/up/bin") == "/usr/bin"
    assert resolved("/bin/nothing") is None
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        resolved("/loop")  # ELOOP, not a hang
    found = resolve_in_layers(lowers, "/")
    assert found is not None and found[0] == "/" and stat.S_ISDIR(found[1].st_mode)


def lookup_in_layers(lowers: list[Path], rel: str) -> os.stat_result | None:
    found = LowerView(lowers).lookup(rel)
    return found[0] if found is not None else None
