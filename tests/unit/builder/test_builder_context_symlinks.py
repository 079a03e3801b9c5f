"""A build context's symlinks never read the builder host's files (issue 14, item 1).

Every COPY/ADD source is resolved inside the context root, as ``RUN --mount`` binds are: a
symlinked dir in the middle of a path or below a wildcard is followed inside the context (an
absolute target starts at the context root, ``..`` stops there); a source that is itself a
symlink is followed when it points within the context and copied as the symlink when it points
out (absolute, climbing, dangling); a copied dir keeps its symlinks as symlinks. The CLI's walk
that streams the context never descends a symlink; the builder's ``extract_context`` writes
nothing through one.

Each test has a host directory ``outside`` beside the context whose file must never show up.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.builder.layers import (
    HashSink,
    LayerWriter,
    Owner,
    context_sources,
    copy_layer,
    destination,
    extract_context,
    mark_archives,
    parse_chown,
)
from dockyard.client.builds import context_entries
from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.runtime.layerdiff import tar_path

HOST = b"HOST-SECRET the builder host's file\n"


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    """``outside/`` (the host: a secret file, a log dir, a tar) and ``ctx/`` (the context)."""
    outside = tmp_path / "outside"
    (outside / "logs").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(HOST)
    (outside / "logs" / "gateway.log").write_bytes(HOST)
    with tarfile.open(outside / "secret.tar", "w") as tf:
        tf.add(outside / "secret.txt", "stolen.txt")
    ctx = tmp_path / "ctx"
    (ctx / "real" / "sub").mkdir(parents=True)
    (ctx / "real" / "a.txt").write_text("in the context\n")
    (ctx / "real" / "b.txt").write_text("b\n")
    (ctx / "real" / "sub" / "c.txt").write_text("c\n")
    (ctx / "rootlink").symlink_to("/")  # the issue's reproduction
    (ctx / "hostdir").symlink_to(outside)  # absolute, to a host dir
    (ctx / "up").symlink_to("../outside")  # relative, climbing out
    (ctx / "lib").symlink_to("real")  # inside the context
    (ctx / "abslib").symlink_to("/real")  # absolute: the context root is "/"
    return ctx, outside


def _layer(ctx: Path, sources: list[str], dest: str, what: str = "COPY") -> list[tarfile.TarInfo]:
    found = context_sources(ctx, sources, what)
    if what == "ADD":
        found = mark_archives(found)
    single = len(found) == 1 and not (found[0].contents or found[0].unpack)
    path, as_dir = destination(dest, "/", len(found), single)
    out = io.BytesIO()
    writer = LayerWriter(HashSink(out.write), 0)
    copy_layer(writer, found, path, as_dir, parse_chown(""), None, Owner(None, None))
    writer.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = tf.getmembers()
        for m in members:
            if m.isreg():
                fh = tf.extractfile(m)
                assert fh is not None and HOST not in fh.read(), m.name
    return members


def _names(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in members}


# --- COPY / ADD sources -----------------------------------------------------------------------------------


def test_the_issues_reproduction_reads_no_host_file(tmp_path: Path) -> None:
    ctx, outside = _setup(tmp_path)
    for source in ("rootlink/etc/passwd", f"rootlink{outside}/secret.txt", f"rootlink{outside}/logs/"):
        with pytest.raises(NotFound, match="not found in build context"):
            _layer(ctx, [source], "/leak")


@pytest.mark.parametrize(
    "source", ["up/secret.txt", "hostdir/secret.txt", "up/logs", "hostdir/logs/gateway.log"]
)
def test_a_symlinked_dir_in_the_middle_of_a_path_stays_in_the_context(tmp_path: Path, source: str) -> None:
    ctx, _ = _setup(tmp_path)
    with pytest.raises(NotFound):
        _layer(ctx, [source], "/leak")


def test_a_symlinked_dir_inside_the_context_is_followed_there(tmp_path: Path) -> None:
    ctx, _ = _setup(tmp_path)
    for source in ("lib/a.txt", "abslib/a.txt", "lib/sub/../a.txt"):
        m = _names(_layer(ctx, [source], "/f"))["f"]
        assert m.isreg() and m.size == len("in the context\n"), source
    (ctx / "up2").symlink_to("../ctx/real")  # climbs out and back in by name: the root stops ".."
    with pytest.raises(NotFound):
        _layer(ctx, ["up2/a.txt"], "/f")


@pytest.mark.parametrize(
    "pattern", ["rootlink/etc/pass*", "up/*.txt", "hostdir/*", "hostdir/l*/*.log", "*/secret.txt"]
)
def test_a_wildcard_never_matches_through_a_symlink_out(tmp_path: Path, pattern: str) -> None:
    ctx, _ = _setup(tmp_path)
    with pytest.raises(NotFound, match="matched nothing"):
        _layer(ctx, [pattern], "/leak/")


def test_a_wildcard_follows_symlinked_dirs_inside_the_context(tmp_path: Path) -> None:
    ctx, _ = _setup(tmp_path)
    got = _names(_layer(ctx, ["l*/[ab].txt"], "/w/"))
    assert {n for n, m in got.items() if m.isreg()} == {"w/a.txt", "w/b.txt"}
    got = _names(_layer(ctx, ["*/sub/c.txt"], "/w/"))  # real/ and lib/ (the same dir) and abslib/
    assert [n for n, m in got.items() if m.isreg()] == ["w/c.txt"]


def test_a_source_symlink_out_of_the_context_is_copied_as_the_symlink(tmp_path: Path) -> None:
    ctx, outside = _setup(tmp_path)
    (ctx / "pw").symlink_to("/etc/passwd")
    (ctx / "upfile").symlink_to("../outside/secret.txt")
    (ctx / "dangling").symlink_to("nowhere")
    got = _names(_layer(ctx, ["pw"], "/pw"))
    assert got["pw"].issym() and got["pw"].linkname == "/etc/passwd"
    got = _names(
        _layer(ctx, ["hostdir", "up", "upfile", "rootlink", "abslib", "dangling", "real/../pw"], "/d/")
    )
    assert {n: (m.issym(), m.linkname) for n, m in got.items() if n != "d"} == {
        "d/hostdir": (True, str(outside)),
        "d/up": (True, "../outside"),
        "d/upfile": (True, "../outside/secret.txt"),
        "d/rootlink": (True, "/"),
        "d/abslib": (True, "/real"),  # absolute: a host path, whatever the context holds there
        "d/dangling": (True, "nowhere"),
        "d/pw": (True, "/etc/passwd"),
    }
    got = _names(_layer(ctx, ["root*", "abs*"], "/g/"))  # matched by a wildcard: the same rule
    assert got["g/rootlink"].issym() and got["g/abslib"].issym() and "g/a.txt" not in got


def test_a_source_symlink_inside_the_context_copies_what_it_points_at(tmp_path: Path) -> None:
    ctx, _ = _setup(tmp_path)
    (ctx / "file").symlink_to("real/a.txt")
    got = _names(_layer(ctx, ["file"], "/f"))
    assert got["f"].isreg() and got["f"].size == len("in the context\n")
    got = _names(_layer(ctx, ["lib"], "/l/"))  # a dir: its contents, as docker
    assert {"l/a.txt", "l/b.txt", "l/sub/c.txt"} <= set(got)


def test_a_copied_dir_keeps_its_symlinks_and_never_walks_through_them(tmp_path: Path) -> None:
    ctx, outside = _setup(tmp_path)
    (ctx / "real" / "host").symlink_to(outside)
    (ctx / "real" / "climb").symlink_to("../../outside")
    (ctx / "real" / "root").symlink_to("/")
    got = _names(_layer(ctx, ["real/"], "/r/"))
    assert got["r/host"].issym() and got["r/host"].linkname == str(outside)
    assert got["r/climb"].issym() and got["r/root"].issym()
    assert not [n for n in got if n.startswith(("r/host/", "r/climb/", "r/root/"))]
    got = _names(_layer(ctx, ["."], "/all/"))  # the whole context, too
    assert got["all/rootlink"].issym() and not [n for n in got if n.startswith("all/rootlink/")]


def test_add_of_a_tar_through_a_symlink_out_extracts_nothing(tmp_path: Path) -> None:
    ctx, outside = _setup(tmp_path)
    (ctx / "t.tar").symlink_to(outside / "secret.tar")
    got = _names(_layer(ctx, ["t.tar"], "/a/", "ADD"))
    assert got["a/t.tar"].issym() and "a/stolen.txt" not in got
    for source in ("up/secret.tar", "hostdir/secret.tar", "rootlink" + str(outside / "secret.tar")):
        with pytest.raises(NotFound):
            _layer(ctx, [source], "/a/", "ADD")
    with tarfile.open(ctx / "real" / "in.tar", "w") as tf:  # a symlink to a tar in the context: extracted
        tf.add(ctx / "real" / "a.txt", "inner.txt")
    (ctx / "in.tar").symlink_to("lib/in.tar")
    assert "a/inner.txt" in _names(_layer(ctx, ["in.tar"], "/a/", "ADD"))


def test_copy_from_a_stage_resolves_inside_the_stage(tmp_path: Path) -> None:
    """``COPY --from`` reads a stage's rootfs through the runtime's ``tar_path``: its symlinks
    lead inside that rootfs, never to the host."""
    _, outside = _setup(tmp_path)
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:image:/root:/bin/sh\n")
    (rootfs / "rootlink").symlink_to("/")
    (rootfs / "climb").symlink_to("../../../../../../..")
    (rootfs / "hostdir").symlink_to(outside)
    for path in ("/rootlink/etc/passwd", "/climb/etc/passwd"):
        out = io.BytesIO()
        tar_path(rootfs, path, out)
        with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
            fh = tf.extractfile("passwd")
            assert fh is not None and fh.read() == b"root:x:0:0:image:/root:/bin/sh\n"
    with pytest.raises(NotFound):
        tar_path(rootfs, "/hostdir/secret.txt", io.BytesIO())


# --- the CLI's side: what is streamed, the ignore file, the Dockerfile ------------------------------------


def test_the_streamed_context_never_descends_a_symlink_even_if_dockerignore_re_includes(
    tmp_path: Path,
) -> None:
    ctx, _ = _setup(tmp_path)
    (ctx / ".dockerignore").write_text(
        "*\n!rootlink/etc/passwd\n!hostdir/secret.txt\n!up/**\n!lib/a.txt\n!real\n"
    )
    sent = dict(context_entries(ctx))
    assert not [rel for rel in sent if rel.startswith(("rootlink/", "hostdir/", "up/", "lib/"))]
    assert "real/a.txt" in sent
    for rel, path in sent.items():
        assert path == ctx / rel


# --- the builder's side: unpacking the streamed context ---------------------------------------------------


def _tar(*entries: tuple[str, bytes, str, int]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, link, mode in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, link, mode
            tf.addfile(info)
    return buf.getvalue()


def test_extract_context_changes_nothing_through_a_symlink(tmp_path: Path) -> None:
    _, outside = _setup(tmp_path)
    outside.chmod(0o700)
    before = os.stat(outside).st_mode
    hostile = _tar(("a", tarfile.SYMTYPE, str(outside), 0o777), ("a", tarfile.DIRTYPE, "", 0o777))
    with pytest.raises(InvalidArgument, match="symlink"):
        extract_context([hostile], tmp_path / "x1")
    assert os.stat(outside).st_mode == before
    for bad in (
        _tar(("d", tarfile.DIRTYPE, "", 0o755), ("h", tarfile.LNKTYPE, "d", 0o644)),  # a hard link to a dir
        _tar(("h", tarfile.LNKTYPE, "missing", 0o644)),
        _tar(("l", tarfile.SYMTYPE, str(outside / "secret.txt"), 0o777), ("h", tarfile.LNKTYPE, "l", 0o644)),
    ):
        with pytest.raises(InvalidArgument):
            extract_context([bad], tmp_path / "x2")
    assert (outside / "secret.txt").read_bytes() == HOST
