"""Squash: layers in overlay form merged into one upper, as overlay would stack them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.runtime.images.unpack import OPAQUE_XATTR
from dockyard.runtime.squash import merge_layers


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


@pytest.fixture
def layers(tmp_path: Path) -> list[Path]:
    if os.geteuid() != 0:
        pytest.skip("whiteouts are 0:0 character devices: mknod needs root")
    dirs = [tmp_path / f"l{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    return dirs


def test_higher_layers_win_and_deletions_stay(tmp_path: Path, layers: list[Path]) -> None:
    one, two, three = layers
    (one / "app").mkdir()
    (one / "app" / "a.txt").write_text("one")
    (one / "app" / "tmp.txt").write_text("temporary")
    (one / "link").symlink_to("app/a.txt")
    (two / "app").mkdir()
    (two / "app" / "a.txt").write_text("two")  # replaced
    _whiteout(two / "app" / "tmp.txt")  # deleted by the next step
    _whiteout(two / "etc")  # deletes something of the base
    (three / "etc").mkdir()  # ...made again: the base's /etc must stay hidden
    (three / "etc" / "new.conf").write_text("x")
    os.chmod(three / "etc", 0o750)

    upper = tmp_path / "upper"
    upper.mkdir()
    merge_layers(layers, upper)

    assert (upper / "app" / "a.txt").read_text() == "two"
    assert os.stat(upper / "app" / "a.txt").st_ino == os.stat(two / "app" / "a.txt").st_ino  # linked
    tmp = os.lstat(upper / "app" / "tmp.txt")
    assert stat.S_ISCHR(tmp.st_mode) and tmp.st_rdev == 0  # the whiteout stays: harmless, and exact
    assert os.readlink(upper / "link") == "app/a.txt"
    assert (upper / "etc" / "new.conf").read_text() == "x"
    assert stat.S_IMODE(os.stat(upper / "etc").st_mode) == 0o750
    assert _opaque(upper / "etc") and not _opaque(upper / "app")
    assert (one / "app" / "tmp.txt").read_text() == "temporary"  # the layers are never written
