"""dockyard.core.private.tighten: a state tree made before the 0700/0600 rule is fixed in place,
image content inside it is not touched."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from dockyard.core.private import tighten


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_old_world_readable_tree_becomes_private_but_content_keeps_its_modes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    own = [state / "registry/storage/blobs/sha256", state / "runtime/outbox/pending", state / "logs"]
    for d in own:
        d.mkdir(parents=True, mode=0o755)
        d.chmod(0o755)
    blob, event = own[0] / "abc", own[1] / "1.json"
    for f in (blob, event):
        f.write_text("x")
        f.chmod(0o644)
    layer = state / "runtime/images/layers/l1/fs"
    (layer / "tmp").mkdir(parents=True)
    (layer / "tmp").chmod(0o1777)
    (layer / "etc").mkdir()
    (layer / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (layer / "etc/passwd").chmod(0o644)
    hosts = state / "runtime/containers/c1/etc/hosts"
    hosts.parent.mkdir(parents=True)
    hosts.write_text("127.0.0.1 localhost\n")
    hosts.chmod(0o644)
    data = state / "runtime/volumes/v/_data/f"
    data.parent.mkdir(parents=True)
    data.write_text("y")
    data.chmod(0o644)
    (state / "link").symlink_to("/etc/passwd")
    gateway = socket.socket(socket.AF_UNIX)
    gateway.bind(str(state / "dockyard.sock"))
    os.chmod(state / "dockyard.sock", 0o660)
    state.chmod(0o755)
    try:
        assert tighten(state) > 0
        assert _mode(state) == 0o700
        for d in own:
            assert _mode(d) == 0o700, d
        assert _mode(blob) == _mode(event) == 0o600
        assert _mode(layer / "tmp") == 0o1777 and _mode(layer / "etc/passwd") == 0o644  # the image's
        assert _mode(hosts) == 0o644 and _mode(data) == 0o644
        assert _mode(state / "dockyard.sock") == 0o660  # the gateway's socket: its own rule
        assert tighten(state) == 0  # nothing left to do
    finally:
        gateway.close()


def test_the_builders_context_does_not_take_the_services_umask(tmp_path: Path) -> None:
    """The builder runs with umask 077; a context's root and implied dirs still reach COPY as 0755."""
    import io
    import tarfile

    from dockyard.builder.layers import extract_context

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a/b/c.txt")
        info.size, info.mode = 1, 0o644
        tar.addfile(info, io.BytesIO(b"x"))
    old = os.umask(0o077)
    try:
        extract_context([buf.getvalue()], tmp_path / "ctx")
    finally:
        os.umask(old)
    ctx = tmp_path / "ctx"
    assert [_mode(p) for p in (ctx, ctx / "a", ctx / "a/b", ctx / "a/b/c.txt")] == [
        0o755,
        0o755,
        0o755,
        0o644,
    ]
