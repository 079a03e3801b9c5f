"""ContentStore, references and --change parsing: the small pure parts of the image store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from image_test_support import sha

from dockyard.core.errors import InvalidArgument, NotFound
from dockyard.core.oci.reference import Reference, parse
from dockyard.runtime.images.changes import apply_changes
from dockyard.runtime.images.content import ContentStore

# -- content ----------------------------------------------------------------------------------


def test_ingest_verifies_and_commits_atomically(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    data = b"x" * (3 << 20)
    digest, size = cs.ingest([data[:1000], data[1000:]], expected=sha(data), size=len(data))
    assert (digest, size) == (sha(data), len(data))
    assert cs.has(digest) and cs.read_bytes(digest) == data and cs.size(digest) == size
    assert cs.path(digest) == tmp_path / "blobs/sha256" / digest[7:]
    assert b"".join(cs.chunks(digest)) == data
    with pytest.raises(InvalidArgument, match="does not match"):
        cs.ingest([b"other"], expected=sha(b"different"))
    with pytest.raises(InvalidArgument, match="size"):
        cs.ingest([b"abc"], size=2)
    with pytest.raises(InvalidArgument, match="size"):
        cs.ingest([b"abc"], size=4)
    assert list((tmp_path / "ingest").iterdir()) == []
    assert cs.digests() == [digest]
    cs.delete(digest)
    cs.delete(digest)  # missing is fine
    with pytest.raises(NotFound):
        cs.read_bytes(digest)
    with pytest.raises(NotFound):
        cs.chunks(digest)


def test_a_failing_stream_leaves_nothing(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)

    def broken() -> object:
        yield b"partial"
        raise OSError("client went away")

    with pytest.raises(OSError):
        cs.ingest(broken())  # type: ignore[arg-type]
    assert list((tmp_path / "ingest").iterdir()) == [] and cs.digests() == []


def test_concurrent_writers_of_the_same_blob(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    data = b"same" * 10000
    threads = [threading.Thread(target=cs.write_bytes, args=(data,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cs.digests() == [sha(data)] and cs.read_bytes(sha(data)) == data


@pytest.mark.parametrize(
    "bad",
    ["sha256:../../etc/passwd", "sha512:" + "a" * 128, "sha256:" + "A" * 64, "sha256:abc", "", "a" * 64],
)
def test_bad_digests_refused(tmp_path: Path, bad: str) -> None:
    cs = ContentStore(tmp_path)
    for call in (cs.has, cs.path, cs.read_bytes, cs.open, cs.delete, cs.size):
        with pytest.raises(InvalidArgument):
            call(bad)


# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want", "canonical"),
    [
        ("busybox", Reference(None, "busybox", "latest", None), "busybox:latest"),
        ("busybox:1.36", Reference(None, "busybox", "1.36", None), "busybox:1.36"),
        ("team/app:v1", Reference(None, "team/app", "v1", None), "team/app:v1"),
        ("127.0.0.1:5000/team/app:1", Reference("127.0.0.1:5000", "team/app", "1", None), None),
        ("localhost/x", Reference("localhost", "x", "latest", None), "localhost/x:latest"),
        ("x@sha256:" + "a" * 64, Reference(None, "x", None, "sha256:" + "a" * 64), None),
        (
            "reg.io:443/a/b-c__d.e:T_1@sha256:" + "b" * 64,
            Reference("reg.io:443", "a/b-c__d.e", "T_1", "sha256:" + "b" * 64),
            None,
        ),
    ],
)
def test_parse(raw: str, want: Reference, canonical: str | None) -> None:
    ref = parse(raw)
    assert ref == want
    assert str(ref) == (canonical or raw)
    assert parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("Busybox", "lowercase"),
        ("a/../b", "component"),
        ("/x", "component"),
        ("x:", "tag"),
        ("x@sha256:abc", "digest"),
        ("a b", "whitespace"),
        ("host:99999/x", "registry"),
        ("", "empty"),
        ("x:" + "t" * 129, "tag"),
        ("a" * 256, "longer"),
    ],
)
def test_parse_refuses(raw: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        parse(raw)


def test_a_bare_name_is_on_docker_hub() -> None:
    assert parse("localhost:5000/x").domain == "localhost:5000"
    assert (parse("busybox").domain, parse("busybox").path) == ("docker.io", "library/busybox")


# -- --change ---------------------------------------------------------------------------------


def test_apply_changes() -> None:
    base = {"os": "linux", "config": {"Env": ["PATH=/bin", "A=0"], "WorkingDir": "/app"}}
    out = apply_changes(
        base,
        [
            'CMD ["nginx", "-g", "daemon off;"]',
            "entrypoint /docker-entrypoint.sh run",
            'ENV A=1 B="two words"',
            "ENV C three words",
            "EXPOSE 80 53/udp 8000-8001",
            'LABEL org.x=y "k 2"=v',
            "USER 1000:1000",
            "WORKDIR sub",
            'VOLUME ["/data", "/logs"]',
            "VOLUME /cache",
            "STOPSIGNAL SIGQUIT",
            "ONBUILD RUN make",
        ],
    )
    c = out["config"]
    assert c["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/docker-entrypoint.sh run"]
    assert c["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=three words"]
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert c["Labels"] == {"org.x": "y", "k 2": "v"}
    assert c["User"] == "1000:1000" and c["WorkingDir"] == "/app/sub"
    assert c["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}}
    assert c["StopSignal"] == "SIGQUIT" and c["OnBuild"] == ["RUN make"]
    assert base["config"]["Env"] == ["PATH=/bin", "A=0"]  # pure: the input is untouched


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("RUN true", "unsupported --change instruction RUN"),
        ("FROM x", "unsupported"),
        ("CMD", "needs an argument"),
        ("EXPOSE 99999", "invalid port"),
        ("EXPOSE 80/icmp", "invalid port"),
        ("LABEL novalue", "key=value"),
        ("ENV lonely", "needs a value"),
        ('CMD ["a", 1]', "array of strings"),
        ("", "empty"),
    ],
)
def test_apply_changes_refuses(change: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        apply_changes({}, [change])
