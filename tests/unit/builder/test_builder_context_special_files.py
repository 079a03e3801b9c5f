"""What the CLI streams of a context holding more than files and dirs (issue 15, item 6 b and c).

A unix socket in the context made the producer thread raise (``gettarinfo`` returns None for
one), which gRPC reported as "Exception iterating requests!"; a second hard link was silently
dropped. Here the CLI's real tar (``context_chunks``) is fed to the builder's real unpacker
(``extract_context``), as the gateway does between them.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

from dockyard.builder.layers import extract_context
from dockyard.client.builds import context_chunks


def _members(ctx: Path) -> dict[str, tarfile.TarInfo]:
    data = b"".join(context_chunks(ctx, "Dockerfile"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "a.txt").write_text("shared bytes\n")
    return ctx


def test_sockets_fifos_and_devices_are_left_out_and_the_rest_is_sent(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(ctx / "app.sock"))  # the reproduction
    os.mkfifo(ctx / "pipe")  # opening it to read would block the producer for ever
    os.mknod(ctx / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # tests run as root
    try:
        members = _members(ctx)
    finally:
        listener.close()
    assert sorted(members) == ["Dockerfile", "a.txt"]
    extract_context([b"".join(context_chunks(ctx, "Dockerfile"))], tmp_path / "unpacked")
    assert (tmp_path / "unpacked" / "a.txt").read_text() == "shared bytes\n"


def test_a_second_hard_link_goes_as_a_tar_link_and_the_builder_links_it_again(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / "sub").mkdir()
    os.link(ctx / "a.txt", ctx / "sub" / "b.txt")
    os.link(ctx / "a.txt", ctx / "z.txt")
    members = _members(ctx)
    assert members["a.txt"].isreg()
    for name in ("sub/b.txt", "z.txt"):
        assert members[name].islnk() and members[name].linkname == "a.txt", name
    out = tmp_path / "unpacked"
    extract_context([b"".join(context_chunks(ctx, "Dockerfile"))], out)
    first = os.stat(out / "a.txt")
    assert first.st_nlink == 3
    for name in ("sub/b.txt", "z.txt"):
        assert os.stat(out / name).st_ino == first.st_ino, name
        assert (out / name).read_text() == "shared bytes\n"


def test_a_hard_link_whose_first_name_is_ignored_goes_as_the_file(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    os.link(ctx / "a.txt", ctx / "b.txt")
    (ctx / ".dockerignore").write_text("a.txt\n")
    members = _members(ctx)
    assert "a.txt" not in members and members["b.txt"].isreg() and members["b.txt"].size == 13
