"""Squash: several unpacked layers (overlay form) merged into one upper directory.

``build --squash`` turns the layers a stage added into one. The layers are applied bottom first
onto an empty directory, as overlay would stack them: a path in a higher layer replaces the
same path below; a whiteout (char device 0:0) deletes what is below and stays, to delete it
from the base too; an opaque directory drops what lower layers put in it and stays opaque, and
so does a directory made where a lower layer had deleted or replaced the path.
The result is an upper directory that ``layerdiff.write_layer`` turns into one layer against the
base's layers, exactly as it does for a container's writable layer.

Files are hard links to the layer's files (same filesystem, nothing copied; the layers are never
written to); directories and symlinks are made with the layer's owner, mode and times.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dockyard.runtime.images.unpack import OPAQUE_XATTR
from dockyard.runtime.layerdiff import is_whiteout, opaque_xattr, remove_path


def merge_layers(layers: list[Path], upper: Path) -> None:
    """Apply ``layers`` (bottom first) onto the empty directory ``upper``."""
    for layer in layers:
        _apply(layer, upper)


def _apply(src: Path, dst: Path) -> None:
    for name in sorted(os.listdir(src)):
        s, d = src / name, dst / name
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            # a dir where a lower layer deleted or replaced the path hides the base's dir there
            opaque = opaque_xattr(os.fspath(s)) or (os.path.lexists(d) and not _is_dir(d))
            if opaque or not os.path.lexists(d):
                remove_path(d)
                d.mkdir()
            _attrs(d, st)
            if opaque:
                os.setxattr(d, OPAQUE_XATTR, b"y")
            _apply(s, d)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))  # after its contents changed it
            continue
        remove_path(d)
        if is_whiteout(st):
            os.mknod(d, stat.S_IFCHR, os.makedev(0, 0))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
            _attrs(d, st)
        else:
            os.link(s, d, follow_symlinks=False)


def _attrs(path: Path, st: os.stat_result) -> None:
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _is_dir(path: Path) -> bool:
    return stat.S_ISDIR(os.lstat(path).st_mode)
