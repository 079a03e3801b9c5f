"""dockyard.runtime.runflags: the ``docker run`` flag parsers (-p, --tmpfs, -v, signal names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.runtime.runflags import (
    BindMount,
    PortMapping,
    TmpfsMount,
    bind_mount,
    parse_publish,
    parse_signal,
    parse_tmpfs,
)


@pytest.mark.parametrize("bad", ["SIGFOO", "0", "65", "-1", "RTMIN+40", ""])
def test_a_bad_signal_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^Invalid signal: "):
        parse_signal(bad)


# --- flag parsers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "mapping"),
    [
        ("80", PortMapping(80)),
        ("8080:80", PortMapping(80, 8080)),
        ("8080:80/udp", PortMapping(80, 8080, "udp")),
        ("127.0.0.1:8080:80", PortMapping(80, 8080, "tcp", "127.0.0.1")),
        ("127.0.0.1::80/TCP", PortMapping(80, 0, "tcp", "127.0.0.1")),
        ("[::1]:8080:80", PortMapping(80, 8080, "tcp", "::1")),
    ],
)
def test_parse_publish(spec: str, mapping: PortMapping) -> None:
    assert parse_publish(spec) == mapping


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no port specified"),
        ("8080:", "no port specified"),
        ("abc", "invalid containerPort: abc"),
        ("70000", "invalid containerPort: 70000"),
        ("0", "invalid containerPort: 0"),
        ("x:80", "invalid hostPort: x"),
        ("1.2.3:80:80", "invalid IP address: 1.2.3"),
        ("80/sctp", "invalid proto: sctp"),
        ("8000-8010:80", "port ranges are not supported yet"),
        ("a:b:c:d", "invalid port specification"),
        ("[::1:80", "invalid IP address"),
    ],
)
def test_parse_publish_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_publish(spec)


@pytest.mark.parametrize(
    ("spec", "mount"),
    [
        ("/run", TmpfsMount("/run", ("noexec", "nosuid", "nodev", "mode=1777"))),
        (
            "/run:size=64m,mode=0700",
            TmpfsMount("/run", ("noexec", "nosuid", "nodev", "mode=0700", "size=64m")),
        ),
        ("/cache/:exec,uid=1000", TmpfsMount("/cache", ("exec", "nosuid", "nodev", "mode=1777", "uid=1000"))),
    ],
)
def test_parse_tmpfs(spec: str, mount: TmpfsMount) -> None:
    assert parse_tmpfs(spec) == mount


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("run", "must be absolute"),
        ("/", "destination can't be '/'"),
        ("/run:size=lots", "invalid tmpfs option 'size=lots'"),
        ("/run:mode=999", "invalid tmpfs option"),
        ("/run:bogus", "invalid tmpfs option 'bogus'"),
        ("/run:uid=70000", "outside the ids"),
    ],
)
def test_parse_tmpfs_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_tmpfs(spec)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("myvol", "/data", "must be an absolute host path"),
        ("{tmp}", "data", "must be absolute"),
        ("{tmp}", "/", "destination can't be '/'"),
        ("{tmp}/missing", "/data", "bind source path does not exist: .*/missing"),
    ],
)
def test_bind_mount_errors(tmp_path: Path, source: str, target: str, message: str) -> None:
    assert bind_mount(f"{tmp_path}/", "/data/", True) == BindMount(str(tmp_path), "/data", True)
    with pytest.raises(InvalidArgument, match=message):
        bind_mount(source.format(tmp=tmp_path), target)
