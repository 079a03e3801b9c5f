"""COPY and ADD as docker does them, the pure parts: ADD's archive extraction (detected by
content, hostile entries refused, owners kept, times clamped), COPY --from wildcards, --chown
names through passwd/group, --chmod octal and symbolic, and ADD's URL rules — with a real HTTP
server on 127.0.0.1 for the download itself."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from dockyard.builder import instructions as ins
from dockyard.builder.dockerfile import parse
from dockyard.builder.download import check_sources, download, is_git, parse_checksum, url_filename
from dockyard.builder.layers import (
    HashSink,
    LayerWriter,
    Owner,
    Source,
    TarSource,
    chown_names,
    context_sources,
    copy_from_tar,
    copy_layer,
    glob_match,
    is_archive,
    mark_archives,
    parse_chmod,
    parse_chown,
    split_glob,
    tar_file_text,
    tar_sources,
)
from dockyard.core.errors import FailedPrecondition, InvalidArgument, NotFound

Entry = tuple[str, bytes, int, int, bytes, str]  # name, type, mode, uid, data, linkname


def _tar(*entries: Entry, mtime: int = 1_700_000_000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, uid, data, link in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, mtime
            info.size, info.linkname, info.uname = len(data), link, "someone"
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _f(name: str, data: bytes = b"x", mode: int = 0o644, uid: int = 0) -> Entry:
    return (name, tarfile.REGTYPE, mode, uid, data, "")


def _d(name: str, mode: int = 0o755, uid: int = 0) -> Entry:
    return (name, tarfile.DIRTYPE, mode, uid, b"", "")


def _l(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Entry:
    return (name, kind, 0o777, 0, b"", target)


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getmembers()


def _add_layer(
    ctx: Path, sources: list[str], dest: str, chown: str = "", chmod: str = "", epoch: int = 0
) -> bytes:
    """The layer an ``ADD sources… dest`` (dest a dir) writes, from the context ``ctx``."""
    out = io.BytesIO()
    writer = LayerWriter(HashSink(out.write), epoch)
    owner = parse_chown(chown)
    srcs = mark_archives(context_sources(ctx, sources, "ADD"))
    try:
        copy_layer(writer, srcs, dest, True, owner, parse_chmod(chmod), owner if chown else Owner(None, None))
    finally:
        writer.close()
    return out.getvalue()


# --- ADD of a local archive ------------------------------------------------------------------------------


def test_archives_are_detected_by_content_not_name(tmp_path: Path) -> None:
    plain = _tar(_f("a.txt"))
    for name, data in (
        ("plain.bin", plain),
        ("gz.txt", gzip.compress(plain)),
        ("bz2", bz2.compress(plain)),
        ("x.xz.not", lzma.compress(plain)),
    ):
        (tmp_path / name).write_bytes(data)
        assert is_archive(tmp_path / name), name
    for name, data in (
        ("app.tar.gz", gzip.compress(b"not a tar at all\n" * 40)),  # named like one, is not
        ("text.tar", b"hello\n" * 200),
        ("empty.tar", b"\0" * 1024),  # a tar with no entry is copied, as docker does
        ("zero", b""),
    ):
        (tmp_path / name).write_bytes(data)
        assert not is_archive(tmp_path / name), name
    (tmp_path / "dir.tar").mkdir()
    marked = mark_archives(context_sources(tmp_path, ["*"], "ADD"))
    assert sorted(s.name for s in marked if s.unpack) == ["bz2", "gz.txt", "plain.bin", "x.xz.not"]


def test_add_extracts_an_archive_keeping_owners_clamping_times(tmp_path: Path) -> None:
    archive = _tar(
        _d("./", mode=0o750, uid=7),
        _d("app", uid=1000),
        _f("app/run.sh", b"#!/bin/sh\n", mode=0o4755, uid=1000),
        _f("lib/deep/x.so", b"elf", uid=2),  # parents not in the archive: made 0755 0:0
        _l("app/link", "/usr/bin/env"),  # an absolute symlink target stays inside the image
        _l("app/hard", "app/run.sh", tarfile.LNKTYPE),
        ("dev/null", tarfile.CHRTYPE, 0o666, 0, b"", ""),  # rootless: no device nodes
    )
    (tmp_path / "rootfs.tgz").write_bytes(gzip.compress(archive))
    layer = _add_layer(tmp_path, ["rootfs.tgz"], "/opt/")
    got = [(m.name, m.type, m.mode, m.uid, m.mtime, m.uname, m.linkname) for m in _members(layer)]
    assert got == [
        ("opt", tarfile.DIRTYPE, 0o750, 7, 0, "", ""),  # the archive's ./ gives the dest its mode
        ("opt/app", tarfile.DIRTYPE, 0o755, 1000, 0, "", ""),
        ("opt/app/run.sh", tarfile.REGTYPE, 0o4755, 1000, 0, "", ""),
        ("opt/lib", tarfile.DIRTYPE, 0o755, 0, 0, "", ""),
        ("opt/lib/deep", tarfile.DIRTYPE, 0o755, 0, 0, "", ""),
        ("opt/lib/deep/x.so", tarfile.REGTYPE, 0o644, 2, 0, "", ""),
        ("opt/app/link", tarfile.SYMTYPE, 0o777, 0, 0, "", "/usr/bin/env"),
        ("opt/app/hard", tarfile.LNKTYPE, 0o777, 0, 0, "", "opt/app/run.sh"),  # its own header
    ]
    # reproducible: the same archive compressed otherwise, a later mtime: the same layer
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "rootfs.tar.xz").write_bytes(lzma.compress(archive))
    assert _add_layer(tmp_path / "other", ["rootfs.tar.xz"], "/opt/") == layer
    # --chown sets every id; --chmod every mode; an epoch after the files keeps their times
    owned = _members(_add_layer(tmp_path, ["rootfs.tgz"], "/opt", chown="5:6", chmod="go-w", epoch=2 * 10**9))
    assert {(m.uid, m.gid) for m in owned} == {(5, 6)}
    assert next(m for m in owned if m.name == "opt/app/run.sh").mode == 0o4755
    assert next(m for m in owned if m.name == "opt/app/run.sh").mtime == 1_700_000_000
    # a file that is not an archive is copied as a file, and one mixed with archives too
    (tmp_path / "notes.txt").write_text("hi")
    mixed = [m.name for m in _members(_add_layer(tmp_path, ["notes.txt", "rootfs.tgz"], "/opt/"))]
    assert mixed[:2] == ["opt", "opt/notes.txt"] and "opt/app/run.sh" in mixed


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ((_f("../evil"),), "leaves the destination"),
        ((_f("a/../../evil"),), "leaves the destination"),
        ((_f("/etc/passwd"),), "absolute name"),
        ((_l("etc", "/etc"), _f("etc/passwd")), "below a symlink"),
        ((_l("up", "../../.."),), "leads out of the destination"),
        ((_d("d"), _l("d/up", "../..")), "leads out of the destination"),
        ((_l("h", "/etc/shadow", tarfile.LNKTYPE),), "no such file in the archive"),
        ((_f("a"), _l("h", "../a", tarfile.LNKTYPE)), "no such file in the archive"),
        ((_f("dir/.wh.gone"),), "whiteouts"),
    ],
)
def test_add_refuses_hostile_archives(tmp_path: Path, entries: tuple[Entry, ...], why: str) -> None:
    (tmp_path / "bad.tar.gz").write_bytes(gzip.compress(_tar(*entries)))
    with pytest.raises(InvalidArgument, match=why) as err:
        _add_layer(tmp_path, ["bad.tar.gz"], "/app/")
    assert "\n" not in str(err.value) and str(err.value).startswith("ADD bad.tar.gz: ")


def test_add_a_corrupt_archive_is_one_line(tmp_path: Path) -> None:
    data = gzip.compress(_tar(_f("a", b"x" * 100_000), _f("b", b"y" * 100_000)))
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) // 2])  # starts as a tar, then ends
    with pytest.raises(InvalidArgument, match="corrupt") as err:
        _add_layer(tmp_path, ["cut.tgz"], "/")
    assert "\n" not in str(err.value)


# --- COPY --from wildcards ------------------------------------------------------------------------------


def test_split_glob_and_go_style_matching() -> None:
    assert split_glob("/out/*.txt") == ("/out", "out/*.txt")
    assert split_glob("out/sub/a?/b") == ("/out/sub", "sub/a?/b")
    assert split_glob("/*.txt") == ("/", "*.txt")
    assert split_glob("/out/file") == ("/out/file", None)
    assert glob_match("out/*.txt", "out/a.txt") and glob_match("out/*.txt", "out/.hidden.txt")
    assert not glob_match("out/*.txt", "out/sub/a.txt")  # * stays within a part
    assert glob_match("a[0-9]", "a7") and not glob_match("a[^0-9]", "a7") and glob_match("a[!0-9]", "ab")
    assert glob_match(r"arr\[0\].txt", "arr[0].txt") and not glob_match(r"arr\[0\].txt", "arr0.txt")


def _stage_tar() -> bytes:
    """What ``copy_from`` of ``/out`` gives: the dir under its name, then what is below, sorted."""
    return _tar(
        _d("out", uid=33),
        _f("out/a.txt", b"a", uid=33),
        _f("out/b.bin", b"b"),
        _l("out/c.txt", "out/sub/x", tarfile.LNKTYPE),  # a hard link to a file not copied
        _d("out/sub"),
        _f("out/sub/x", b"shared bytes", mode=0o600),
        _d("out/z.txt"),  # a dir matching the wildcard: its contents are copied
        _f("out/z.txt/inner", b"i"),
    )


def test_copy_from_with_a_wildcard(tmp_path: Path) -> None:
    tar = io.BytesIO(_stage_tar())
    found = tar_sources(tar, "out/*.txt")
    assert found == [
        TarSource("out/a.txt", False),
        TarSource("out/c.txt", False),
        TarSource("out/z.txt", True),
    ]
    assert tar_sources(io.BytesIO(_stage_tar()), "out/*.go") == []
    out = io.BytesIO()
    writer = LayerWriter(HashSink(out.write), 0)
    tar.seek(0)
    copy_from_tar(writer, tar, found, "/dst", True, Owner(None, None), None)
    writer.close()
    got = {m.name: m for m in _members(out.getvalue())}
    assert list(got) == ["dst", "dst/a.txt", "dst/c.txt", "dst/inner"]
    assert (got["dst/a.txt"].uid, got["dst/a.txt"].mtime) == (33, 0)  # owners kept, times clamped
    # the hard link's target was not copied: it became a file with the target's bytes
    assert got["dst/c.txt"].isreg() and got["dst/c.txt"].size == len(b"shared bytes")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        member = tf.extractfile("dst/c.txt")
        assert member is not None and member.read() == b"shared bytes"


def test_chown_names_through_passwd_and_group() -> None:
    passwd = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:34::/var/www:/bin/sh\n# junk\nbad:x:oops:1\n"
    group = "root:x:0:\nstaff:x:50:alice\n"
    assert chown_names("www-data:staff") == (True, True)
    assert chown_names("33:staff") == (False, True) and chown_names("33") == (False, False)
    assert parse_chown("www-data", passwd, group) == Owner(33, 34)  # the user's primary group
    assert parse_chown("www-data:staff", passwd, group) == Owner(33, 50)
    assert parse_chown("www-data:7", passwd, group) == Owner(33, 7)
    assert parse_chown("10:staff", passwd, group) == Owner(10, 50)
    assert parse_chown("10", passwd, group) == Owner(10, 10)  # a lone uid is the gid too
    assert parse_chown(":staff", passwd, group) == Owner(0, 50)
    with pytest.raises(InvalidArgument, match="unknown user 'nobody'"):
        parse_chown("nobody", passwd, group)
    with pytest.raises(InvalidArgument, match="unknown user 'bad'"):
        parse_chown("bad", passwd, group)
    with pytest.raises(InvalidArgument, match="unknown group 'wheel'"):
        parse_chown("www-data:wheel", passwd, group)
    with pytest.raises(InvalidArgument, match="unknown user"):
        parse_chown("www-data", None, None)  # FROM scratch: no /etc/passwd
    assert tar_file_text(_tar(_f("passwd", passwd.encode()))) == passwd
    assert tar_file_text(_tar(_l("passwd", "../x"))) is None


def test_chmod_octal_and_symbolic() -> None:
    def mode(text: str, start: int, is_dir: bool = False) -> int:
        chmod = parse_chmod(text)
        assert chmod is not None
        return chmod.apply(start, is_dir)

    assert mode("755", 0o600) == 0o755 and mode("0644", 0o777, True) == 0o644 and mode("4755", 0) == 0o4755
    assert mode("+x", 0o644) == 0o755
    assert mode("u+x", 0o644) == 0o744
    assert mode("go-w", 0o777) == 0o755
    assert mode("u=rwX,go=rX", 0o600) == 0o644  # a plain file: no x
    assert mode("u=rwX,go=rX", 0o700, is_dir=True) == 0o755  # a dir: X is x
    assert mode("u=rwX,go=rX", 0o700) == 0o755  # an executable file keeps x
    assert mode("g=u", 0o640) == 0o660
    assert mode("a=r,u+w", 0o777) == 0o644
    assert mode("u+s,+t", 0o755) == 0o5755
    assert mode("o=", 0o777) == 0o770
    for bad in ("8", "77777", "u+q", "x+r", "=,", "rwx"):
        with pytest.raises(InvalidArgument):
            parse_chmod(bad)


# --- ADD of a URL ----------------------------------------------------------------------------------------


def _add(line: str) -> ins.Add:
    inst = parse(f"FROM scratch\n{line}\n".encode()).instructions[1]
    assert isinstance(inst, ins.Add)
    return inst


def test_url_rules() -> None:
    assert url_filename("https://example.com/dl/tool-1.2.tar.gz?sig=1#x") == "tool-1.2.tar.gz"
    assert url_filename("http://example.com/") == "__unnamed__" and url_filename("http://h") == "__unnamed__"
    assert is_git("git@github.com:moby/buildkit.git") and is_git("https://github.com/moby/buildkit.git#v0.12")
    assert is_git("git://example.com/repo") and not is_git("https://example.com/tool.tar.gz")
    good = "sha256:" + "a" * 64
    assert parse_checksum(good) == ("sha256", "a" * 64)
    for bad in ("sha256:abc", "md5:" + "a" * 32, "a" * 64, "sha256:" + "A" * 64):
        with pytest.raises(InvalidArgument, match="invalid checksum"):
            parse_checksum(bad)
    check_sources(_add(f"ADD --checksum={good} https://example.com/x /x"))
    for line, why in (
        ("ADD git@github.com:moby/buildkit.git /src", "git sources are not supported"),
        ("ADD https://example.com/x.git /src", "git sources are not supported"),
        (f"ADD --checksum={good} a.txt /x", "non-HTTP"),
        (f"ADD --checksum={good} https://example.com/x https://example.com/y /d/", "multiple sources"),
        ("ADD --checksum=sha256:zz https://example.com/x /x", "invalid checksum"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            check_sources(_add(line))
    copy = parse(b"FROM scratch\nCOPY https://example.com/x /x\n").instructions[1]
    assert isinstance(copy, ins.Copy)
    with pytest.raises(InvalidArgument, match="source can't be a URL for COPY"):
        check_sources(copy)


@pytest.fixture
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (aiohttp, in its own thread's loop) serving /files/<name>."""
    import threading

    body = b"downloaded bytes\n"

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "endless":  # chunked, no length: it never ends
            resp = web.StreamResponse()
            await resp.prepare(request)
            while True:
                await resp.write(b"z" * 65536)
        if name == "announced-big":
            return web.Response(body=b"x" * 4096, headers={"Content-Length": "4096"})
        if name != "tool.bin":
            raise web.HTTPNotFound()
        return web.Response(body=body, headers={"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/files/{name}", handler)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/files/"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_download_verifies_and_saves_0600(tmp_path: Path, server: str) -> None:
    digest = hashlib.sha256(b"downloaded bytes\n").hexdigest()
    got = asyncio.run(download(server + "tool.bin", tmp_path / "t", f"sha256:{digest}"))
    assert got.digest == f"sha256:{digest}" and got.mtime == 1445412480
    assert (tmp_path / "t").read_bytes() == b"downloaded bytes\n"
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o600
    layer = io.BytesIO()
    writer = LayerWriter(HashSink(layer.write), 0)
    copy_layer(
        writer, [Source(got.path, url_filename(server + "tool.bin"), False)], "/usr/bin", True, Owner(), None
    )
    writer.close()
    last = _members(layer.getvalue())[-1]
    assert (last.name, last.mode, last.uid, last.mtime) == ("usr/bin/tool.bin", 0o600, 0, 0)

    with pytest.raises(
        FailedPrecondition, match=f"checksum mismatch: expected sha256:{'0' * 64}, got sha256:{digest}"
    ):
        asyncio.run(download(server + "tool.bin", tmp_path / "bad", "sha256:" + "0" * 64))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(NotFound, match="answered 404"):
        asyncio.run(download(server + "missing", tmp_path / "m"))


def test_a_download_past_its_limit_fails_and_leaves_nothing(tmp_path: Path, server: str) -> None:
    """An endless response wrote 5.5 GB in 30 s: ADD stops at the limit, says so, keeps nothing."""
    for name, limit in (("endless", 1 << 20), ("announced-big", 1024)):
        target = tmp_path / name
        with pytest.raises(FailedPrecondition, match="--max-download"):
            asyncio.run(download(server + name, target, limit=limit))
        assert not target.exists()
