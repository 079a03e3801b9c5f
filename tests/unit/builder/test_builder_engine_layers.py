"""The build engine's pure parts: reproducible COPY layers, context extraction, config changes,
history lines, cache keys, and the runtime's RUN-layer rewrite (stubs out, times clamped)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.builder import imageconfig
from dockyard.builder import instructions as ins
from dockyard.builder.cache import BuildCache, step_key
from dockyard.builder.dockerfile import parse
from dockyard.builder.imageconfig import StageState
from dockyard.builder.layers import (
    HashSink,
    LayerWriter,
    Owner,
    TarSource,
    context_sources,
    copy_from_tar,
    copy_layer,
    destination,
    extract_context,
    parse_chown,
    tar_sources,
)
from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.runtime.buildsteps import rewrite_layer


def _layer(root: Path, sources: list[str], dest: str, epoch: int = 0, chown: str = "") -> bytes:
    out = io.BytesIO()
    srcs = context_sources(root, sources)
    single = len(srcs) == 1 and not srcs[0].contents
    path, as_dir = destination(dest, "/", len(srcs), single)
    writer = LayerWriter(HashSink(out.write), epoch)
    copy_layer(writer, srcs, path, as_dir, parse_chown(chown), None)
    writer.close()
    return out.getvalue()


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getmembers()


def _tree(root: Path) -> Path:
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "b.txt").write_text("b")
    (root / "src" / "a.txt").write_text("a")
    (root / "src" / "sub" / "c.txt").write_text("c")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_copy_layer_is_reproducible_and_docker_shaped(tmp_path: Path) -> None:
    one = _tree(tmp_path / "one")
    two = _tree(tmp_path / "two")
    for path in two.rglob("*"):
        os.utime(path, (1_600_000_000, 1_600_000_000))  # other times, same bytes
    assert _layer(one, ["src"], "/app/") == _layer(two, ["src"], "/app/")
    members = _members(_layer(one, ["src"], "/app/"))
    assert [m.name for m in members] == ["app", "app/a.txt", "app/b.txt", "app/sub", "app/sub/c.txt"]
    assert all(m.mtime == 0 and (m.uid, m.gid) == (0, 0) and not m.uname for m in members)
    # a file into a dir keeps its name and mode; to a file path it is renamed; parents are made
    files = _members(_layer(one, ["run.sh"], "/usr/local/bin/"))
    assert [(m.name, m.mode) for m in files] == [
        ("usr", 0o755),
        ("usr/local", 0o755),
        ("usr/local/bin", 0o755),
        ("usr/local/bin/run.sh", 0o755),
    ]
    assert _members(_layer(one, ["run.sh"], "/entry"))[-1].name == "entry"
    # an epoch later than the files keeps their times; --chown sets the ids
    late = _members(_layer(two, ["run.sh"], "/x", epoch=2_000_000_000, chown="33:44"))
    assert (late[-1].mtime, late[-1].uid, late[-1].gid) == (1_600_000_000, 33, 44)
    # a changed byte changes the layer (and so the cache key)
    (one / "src" / "sub" / "c.txt").write_text("C")
    assert _layer(one, ["src"], "/app/") != _layer(two, ["src"], "/app/")


def test_sources_globs_and_errors(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert [s.name for s in context_sources(root, ["src/*.txt"])] == ["a.txt", "b.txt"]
    with pytest.raises(NotFound, match="not found in build context"):
        context_sources(root, ["missing"])
    with pytest.raises(NotFound, match="matched nothing"):
        context_sources(root, ["*.go"])
    with pytest.raises(InvalidArgument, match="must be a directory"):
        destination("/app", "/", 2, False)
    assert destination("data", "/srv", 1, True) == ("/srv/data", False)
    with pytest.raises(InvalidArgument, match="unknown user 'www-data'"):
        parse_chown("www-data")  # a name needs the image's /etc/passwd (test_builder_add_copy.py)


def test_copy_from_tar_places_a_dir_or_a_file(tmp_path: Path) -> None:
    src = io.BytesIO()
    with tarfile.open(fileobj=src, mode="w") as tf:
        for name, kind in (("out", tarfile.DIRTYPE), ("out/bin", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.mtime, info.mode = kind, 33, 1_700_000_000, 0o750
            data = b"x" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    writer = LayerWriter(HashSink(out.write), 0)
    src.seek(0)
    sources = tar_sources(src, None)
    assert sources == [TarSource("out", True)]
    src.seek(0)
    copy_from_tar(writer, src, sources, "/opt/app", True, Owner(None, None), None)
    writer.close()
    got = [(m.name, m.uid, m.mtime) for m in _members(out.getvalue())]
    assert got == [("opt", 0, 0), ("opt/app", 33, 0), ("opt/app/bin", 33, 0)]


def test_extract_context_refuses_escapes(tmp_path: Path) -> None:
    def tar_of(*entries: tuple[str, bytes, str]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, kind, link in entries:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, link
                tf.addfile(info)
        return buf.getvalue()

    ok = tar_of(("d", tarfile.DIRTYPE, ""), ("d/f", tarfile.REGTYPE, ""))
    assert extract_context([ok[:700], ok[700:]], tmp_path / "ok") == (1, 0)
    assert (tmp_path / "ok" / "d" / "f").is_file()
    for bad in (
        tar_of(("../evil", tarfile.REGTYPE, "")),
        tar_of(("/abs", tarfile.REGTYPE, "")),
        tar_of(("l", tarfile.SYMTYPE, "/etc"), ("l/passwd", tarfile.REGTYPE, "")),
    ):
        with pytest.raises(InvalidArgument):
            extract_context([bad], tmp_path / "bad")
    assert not (tmp_path / "evil").exists()


def _inst(text: str) -> ins.Instruction:
    return parse("FROM scratch\n" + text).instructions[1]


def test_config_changes_and_history_lines() -> None:
    state = StageState()
    cfg = imageconfig.apply({"Env": ["PATH=/bin", "A=0"], "Cmd": ["sh"]}, _inst("ENV A=1 B=2"), state)
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=2"]
    cfg = imageconfig.apply(cfg, _inst("ENTRYPOINT python app.py"), state)
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "python app.py"] and cfg["Cmd"] is None
    cfg = imageconfig.apply(cfg, _inst('CMD ["--port", "80"]'), state)
    cfg = imageconfig.apply(cfg, _inst("WORKDIR /srv"), state)
    cfg = imageconfig.apply(cfg, _inst("WORKDIR app"), state)
    cfg = imageconfig.apply(cfg, _inst("EXPOSE 80 53/udp"), state)
    cfg = imageconfig.apply(cfg, _inst("HEALTHCHECK --interval=5s CMD true"), state)
    assert cfg["WorkingDir"] == "/srv/app" and cfg["Cmd"] == ["--port", "80"]
    assert cfg["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}}
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
    assert imageconfig.created_by(_inst('CMD ["a", "b c"]'), {"Cmd": ["a", "b c"]}) == 'CMD ["a" "b c"]'
    assert imageconfig.run_created_by(["/bin/sh", "-c", "make"], ("V=2",)) == "RUN |1 V=2 /bin/sh -c make"
    run = _inst("RUN <<EOF\necho hi\nEOF")
    assert isinstance(run, ins.Run)
    assert imageconfig.run_argv(run, ("/bin/sh", "-c")) == ["/bin/sh", "-c", "echo hi\n"]


def test_cache_keys_and_store(tmp_path: Path) -> None:
    assert step_key("a", "bc") != step_key("ab", "c")
    cache = BuildCache(tmp_path / "cache.json")
    cache.put("k", "sha256:1")
    assert BuildCache(tmp_path / "cache.json").get("k") == "sha256:1"
    assert cache.prune(0) == 1 and cache.get("k") is None


def test_run_layer_rewrite_drops_stubs_and_clamps(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc").chmod(0o755)
    raw = tmp_path / "raw.tar"
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode in (
            ("dev", tarfile.DIRTYPE, 0o755),  # a stub: the image had no /dev
            ("etc", tarfile.DIRTYPE, 0o755),  # copied up for etc/hosts only
            ("etc/hosts", tarfile.REGTYPE, 0o644),  # a stub file
            ("proc", tarfile.DIRTYPE, 0o755),
            ("srv", tarfile.DIRTYPE, 0o755),
            ("srv/made", tarfile.REGTYPE, 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 1_700_000_000
            info.uid = info.gid = os.getuid()
            tf.addfile(info)
    os.chown(lower / "etc", os.getuid(), os.getgid())
    out = tmp_path / "out.tar"
    rewrite_layer(raw, out, {"dev", "proc", "etc/hosts"}, [lower], 0)
    with tarfile.open(out) as tf:
        assert [(m.name, m.mtime) for m in tf] == [("srv", 0), ("srv/made", 0)]
