"""Image layers in overlay format, built for the snapshot tests (needs root: whiteouts are devices).

<base>/l1/  d/{a,b}  o/x  gone  keep/k  hl1 ═ hl2 (hard links)
<base>/l2/  gone (whiteout)  o/ (opaque) y
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: What the union of l1 and l2 shows.
UNION = ["d", "d/a", "d/b", "hl1", "hl2", "keep", "keep/k", "o", "o/y"]


def whiteout(path: Path) -> None:
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))


def make_layers(base: Path) -> list[Path]:
    """Two layers, bottom first."""
    l1, l2 = base / "l1", base / "l2"
    for d in ("d", "o", "keep"):
        (l1 / d).mkdir(parents=True)
    for name in ("d/a", "d/b", "o/x", "gone", "keep/k", "hl1"):
        (l1 / name).write_text(name)
    os.link(l1 / "hl1", l1 / "hl2")
    os.chown(l1 / "keep" / "k", 33, 33)
    l2.mkdir()
    whiteout(l2 / "gone")
    (l2 / "o").mkdir()
    (l2 / "o" / "y").write_text("y")
    os.setxattr(l2 / "o", "user.overlay.opaque", b"y")
    return [l1, l2]


def tree(root: Path) -> list[str]:
    """Every path below ``root``, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def change_the_rootfs(m: Path) -> None:
    """What a container does: delete, replace a dir, add files, a hard link, a symlink, chown."""
    os.unlink(m / "d" / "a")
    for p in (m / "o").iterdir():
        p.unlink()
    (m / "o").rmdir()
    (m / "o").mkdir()
    (m / "o" / "z").write_text("z")
    (m / "new").write_text("new")
    os.chown(m / "new", 33, 33)
    os.link(m / "new", m / "new2")
    (m / "nd" / "sub").mkdir(parents=True)
    (m / "nd" / "sub" / "f").write_text("1")
    os.symlink("/etc/passwd", m / "lnk")


#: ``docker diff`` after :func:`change_the_rootfs`, the same for every snapshotter.
EXPECTED_CHANGES = [
    "C /d",
    "D /d/a",
    "A /lnk",
    "A /nd",
    "A /nd/sub",
    "A /nd/sub/f",
    "A /new",
    "A /new2",
    "C /o",
    "D /o/y",
    "A /o/z",
]
