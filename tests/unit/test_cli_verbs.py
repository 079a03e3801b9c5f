"""docker's verbs in the CLI: flag parsing, the human columns, env files, -p/-v, cp containment."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from dockyard.cli import human
from dockyard.cli.cp import extract, split_arg
from dockyard.cli.logs import parse_tail
from dockyard.cli.progress import ProgressView, line
from dockyard.cli.spec import parse_env, parse_env_file
from dockyard.cli.verbs import VERBS
from dockyard.client.grammar import Port, Volume, parse_publish, parse_volume
from dockyard.core.errors import InvalidArgument

NOW = 1_800_000_000.0


def parse(*argv: str) -> argparse.Namespace:
    """Parse as ``dockyard`` will once VERBS are merged into COMMANDS."""
    import dockyard.cli.__main__ as main

    with mock.patch.dict(main.COMMANDS, {k: v for k, v in VERBS.items() if k not in main.COMMANDS}):
        verb = next(a for a in argv if a in main.COMMANDS)
        return main.build_parser(verb).parse_args(list(argv))


# --- parsing ---------------------------------------------------------------------------------------


def test_run_takes_docker_flag_combinations() -> None:
    args = parse("run", "-it", "--rm", "-p", "8080:80", "-e", "K", "-v", "/a:/b:ro", "busybox", "ls", "-la")
    assert args.interactive and args.tty and args.rm
    assert args.publish == ["8080:80"] and args.env == ["K"] and args.volume == ["/a:/b:ro"]
    assert args.image == "busybox" and args.argv == ["ls", "-la"]
    assert args.module == "run"


def test_flags_after_the_image_belong_to_the_command() -> None:
    args = parse("run", "-d", "--name", "web", "--net", "none", "img", "sh", "-c", "echo hi", "--rm", "-l")
    assert args.detach and args.name == "web" and args.network == "none"
    assert not args.rm and args.label == []
    assert args.argv == ["sh", "-c", "echo hi", "--rm", "-l"]


def test_run_without_a_command_and_repeatable_flags() -> None:
    args = parse(
        "run", "-e", "A=1", "--env", "B=2", "-l", "x=y", "--env-file", "f", "-P", "--stop-timeout", "3", "img"
    )
    assert args.env == ["A=1", "B=2"] and args.label == ["x=y"] and args.env_file == ["f"]
    assert args.publish_all and args.stop_timeout == "3" and args.argv == []  # parsed in build_spec


def test_exec_and_nested_forms() -> None:
    args = parse("exec", "-it", "-u", "0", "-w", "/tmp", "c1", "sh", "-c", "id")
    assert args.interactive and args.tty and args.user == "0" and args.argv == ["sh", "-c", "id"]
    ls = parse("image", "ls", "-q")
    assert ls.module == "image" and ls.action_module == "images" and ls.quiet
    prune = parse("container", "prune", "-f")
    assert prune.action == "prune" and prune.force
    assert parse("image", "prune", "-a", "-f").all
    assert parse("container", "ls", "-a", "-n", "3").last == 3
    assert parse("system", "df", "-v").verbose
    assert parse("pull", "--tls-verify=false", "localhost:5000/app").tls_verify is False
    assert parse("pull", "app").tls_verify is True
    assert parse("stop", "c1").time is None  # unset: the container's own stop timeout
    assert parse("stop", "-t", "0", "c1").time == 0


def test_every_verb_has_a_parser() -> None:
    import dockyard.cli.__main__ as main

    with mock.patch.dict(main.COMMANDS, VERBS):
        for verb in VERBS:
            main.build_parser(verb)


# --- env, ports, volumes -----------------------------------------------------------------------------


def test_env_file_like_docker() -> None:
    text = '# a comment\n\nA=1\n  B=two words \nC=\nFROM_HOST\nUNSET\nQ="quoted"\nX=a=b\n'
    env = parse_env_file(text, {"FROM_HOST": "h"})
    assert env == ["A=1", "B=two words ", "C=", "FROM_HOST=h", 'Q="quoted"', "X=a=b"]


def test_env_file_mistakes_are_one_line() -> None:
    with pytest.raises(InvalidArgument, match="line 2"):
        parse_env_file("A=1\n=oops\n", {})
    with pytest.raises(InvalidArgument, match="whitespace"):
        parse_env_file("BAD KEY=1\n", {})


def test_bare_e_takes_the_clis_value() -> None:
    assert parse_env(["K", "A=1", "GONE"], {"K": "v"}) == ["K=v", "A=1"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [Port("", 0, 80, "tcp")]),
        ("8080:80", [Port("", 8080, 80, "tcp")]),
        ("127.0.0.1:8080:80/udp", [Port("127.0.0.1", 8080, 80, "udp")]),
        ("127.0.0.1::80", [Port("127.0.0.1", 0, 80, "tcp")]),
        ("[::1]:8080:80", [Port("::1", 8080, 80, "tcp")]),
        ("8000-8001:80-81", [Port("", 8000, 80, "tcp"), Port("", 8001, 81, "tcp")]),
    ],
)
def test_publish(spec: str, expected: list[Port]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec", ["http", "8080:", "1:2:3:4", "70000:80", "80/icmp", "8000-8002:80-81"])
def test_bad_publish_is_one_clear_line(spec: str) -> None:
    with pytest.raises(InvalidArgument, match=r"bad -p"):
        parse_publish(spec)


def test_volumes() -> None:
    assert parse_volume("/h:/c:ro") == Volume("/h", "/c", True, "bind")
    assert parse_volume("./data:/data", cwd="/work") == Volume("/work/data", "/data", False, "bind")
    assert parse_volume("cache:/cache") == Volume("cache", "/cache", False, "volume")
    assert parse_volume("/anon") == Volume("", "/anon", False, "volume")
    for bad in ("/h:rel", "/h:/c:rx", "a:b:c:d"):
        with pytest.raises(InvalidArgument, match="bad -v"):
            parse_volume(bad)


def test_build_spec() -> None:
    from dockyard.cli.spec import build_spec

    args = parse(
        "run", "--entrypoint", "/bin/sh", "-p", "8080:80", "-v", "/h:/c", "-l", "k", "img", "-c", "x"
    )
    with mock.patch.dict(os.environ, {}, clear=False):
        spec = build_spec(args)
    assert list(spec.entrypoint) == ["/bin/sh"] and list(spec.command) == ["-c", "x"]
    assert spec.ports[0].host_port == 8080 and spec.ports[0].container_port == 80
    assert spec.mounts[0].type == "bind" and dict(spec.labels) == {"k": ""}


# --- human columns -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (1_240_000, "1.24MB"), (72_800_000, "72.8MB"), (5e9, "5GB")],
)
def test_sizes_like_docker(size: float, text: str) -> None:
    assert human.human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (125, "2 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_durations_like_docker(seconds: float, text: str) -> None:
    assert human.human_duration(seconds) == text


def test_status_strings() -> None:
    assert human.status_column(1) == "Created"
    assert human.status_column(2, started=NOW - 3, now=NOW) == "Up 3 seconds"
    assert human.status_column(3, started=NOW - 130, now=NOW) == "Up 2 minutes (Paused)"
    assert human.status_column(4, 0, NOW - 60, NOW - 5, now=NOW) == "Exited (0) 5 seconds ago"
    assert human.status_column(4, 137) == "Exited (137)"
    assert human.status_column(5) == "Dead"
    assert human.ago(NOW - 120, now=NOW) == "2 minutes ago"


def test_ports_and_ids_and_truncation() -> None:
    ports = [
        SimpleNamespace(host_ip="", host_port=8080, container_port=80, protocol="tcp"),
        SimpleNamespace(host_ip="127.0.0.1", host_port=5353, container_port=53, protocol="udp"),
    ]
    assert human.port_column(ports) == "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"
    assert human.port_lines(ports) == ["80/tcp -> 0.0.0.0:8080", "53/udp -> 127.0.0.1:5353"]
    assert human.port_lines(ports, "53/udp") == ["127.0.0.1:5353"]
    assert human.port_lines(ports, "53") == []
    assert human.short_id("sha256:" + "ab" * 32) == "abababababab"
    assert human.short_id("0123456789abcdef") == "0123456789ab"
    assert human.command_column(["sh", "-c", "echo hello world; sleep 1"]) == '"sh -c echo hello wo…"'
    assert human.command_column(["sh", "-c", "x"], no_trunc=True) == '"sh -c x"'
    assert human.split_repo_tag("localhost:5000/app:1") == ("localhost:5000/app", "1")
    assert human.split_repo_tag("localhost:5000/app") == ("localhost:5000/app", "<none>")
    assert human.split_repo_tag("") == ("<none>", "<none>")


def test_images_rows_show_none_for_untagged() -> None:
    from dockyard.cli.images import rows

    ts = SimpleNamespace(seconds=int(NOW) - 7200, nanos=0)
    tagged = SimpleNamespace(
        id="sha256:" + "1" * 64,
        repo_tags=["app:1", "app:latest"],
        repo_digests=["app@sha256:dd"],
        created=ts,
        size=1_240_000,
    )
    bare = SimpleNamespace(id="sha256:" + "2" * 64, repo_tags=[], repo_digests=[], created=ts, size=5)
    out = rows([tagged, bare], now=NOW)
    assert [(r["Repository"], r["Tag"], r["ID"]) for r in out] == [
        ("app", "1", "111111111111"),
        ("app", "latest", "111111111111"),
        ("<none>", "<none>", "222222222222"),
    ]
    assert out[0]["Size"] == "1.24MB" and out[0]["CreatedSince"] == "2 hours ago"
    assert out[0]["Digest"] == "sha256:dd"


def test_history_rows_show_missing() -> None:
    from dockyard.cli.history import rows

    ts = SimpleNamespace(seconds=int(NOW) - 60, nanos=0)
    entries = [
        SimpleNamespace(id="sha256:" + "a" * 64, created=ts, created_by='CMD ["sh"]', size=0, comment=""),
        SimpleNamespace(
            id="", created=ts, created_by="ADD rootfs.tar / " + "x" * 60, size=1_500_000, comment="c"
        ),
    ]
    out = rows(entries, now=NOW)
    assert out[0]["ID"] == "aaaaaaaaaaaa" and out[1]["ID"] == "<missing>"
    assert out[1]["Size"] == "1.5MB" and len(out[1]["CreatedBy"]) == 45 and out[1]["CreatedBy"].endswith("…")


def test_tail_and_start_error_codes() -> None:
    assert parse_tail("all") == 0 and parse_tail("10") == 10
    with pytest.raises(InvalidArgument):
        parse_tail("ten")
    from dockyard.client import exit_code
    from dockyard.core.errors import FailedPrecondition, NotFound, Reason

    assert exit_code(FailedPrecondition("whatever runc said", reason=Reason.COMMAND_NOT_FOUND)) == 127
    assert exit_code(FailedPrecondition("whatever runc said", reason=Reason.COMMAND_NOT_EXECUTABLE)) == 126
    assert exit_code(NotFound("no such image: x", reason=Reason.NO_SUCH_IMAGE)) == 125
    assert exit_code(FailedPrecondition('exec: "nope": executable file not found in $PATH')) == 125  # no text


def test_progress_live_on_a_tty_and_plain_elsewhere() -> None:
    assert line("sha256:" + "a" * 64, "Downloading", 500_000, 1_000_000).startswith(
        "aaaaaaaaaaaa: Downloading [=========================>"
    )
    assert line("sha256:" + "a" * 64, "Pull complete", 10, 10) == "aaaaaaaaaaaa: Pull complete"
    plain = io.StringIO()
    view = ProgressView(plain, tty=False)
    for current in (0, 10, 20):
        view.update("sha256:" + "b" * 64, "Downloading", current, 100)
    view.update("sha256:" + "b" * 64, "Pull complete", 100, 100)
    assert plain.getvalue() == "bbbbbbbbbbbb: Downloading\nbbbbbbbbbbbb: Pull complete\n"
    live = io.StringIO()
    view = ProgressView(live, tty=True)
    view.update("l1", "Waiting")
    view.update("l2", "Waiting")
    view.update("l1", "Downloading", 1, 2)
    assert live.getvalue().startswith("l1: Waiting\nl2: Waiting\n\x1b[2A\r\x1b[2Kl1: Downloading [")


# --- cp ----------------------------------------------------------------------------------------------


def test_cp_argument_forms() -> None:
    assert split_arg("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_arg("/abs:path") == (None, "/abs:path")
    assert split_arg("./a:b") == (None, "./a:b")
    assert split_arg("-") == (None, "-")
    assert split_arg("plain") == (None, "plain")


def _tar(*members: tuple[str, str, bytes | str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = str(payload)
                tar.addfile(info)
            elif kind == "hard":
                info.type = tarfile.LNKTYPE
                info.linkname = str(payload)
                tar.addfile(info)
    buf.seek(0)
    return buf


def test_cp_extracts_inside_dest(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = _tar(("dir", "etc", b""), ("file", "etc/hosts", b"127.0.0.1 x\n"), ("sym", "etc/l", "hosts"))
    assert extract(archive, str(dest)) == 3
    assert (dest / "etc/hosts").read_bytes() == b"127.0.0.1 x\n"
    assert os.readlink(dest / "etc/l") == "hosts"


def test_cp_copies_as_a_new_name(tmp_path: Path) -> None:
    archive = _tar(("file", "hosts", b"x"))
    extract(archive, str(tmp_path), rename=("hosts", "copy"))
    assert (tmp_path / "copy").read_bytes() == b"x"
    with pytest.raises(InvalidArgument, match="outside the copied"):
        extract(_tar(("file", "other", b"x")), str(tmp_path), rename=("hosts", "copy"))


@pytest.mark.parametrize(
    "members",
    [
        [("file", "../escape", b"x")],
        [("file", "a/../../escape", b"x")],
        [("file", "/abs", b"x")],
        [("sym", "link", "/"), ("file", "link/escape", b"x")],
        [("sym", "up", ".."), ("file", "up/escape", b"x")],
        [("hard", "h", "../../etc/passwd")],
    ],
)
def test_cp_refuses_an_escape(tmp_path: Path, members: list[tuple[str, str, bytes | str]]) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidArgument, match="refusing"):
        extract(_tar(*members), str(dest))
    assert not (tmp_path / "escape").exists() and not Path("/escape").exists()


def test_cp_tar_chunks_round_trip(tmp_path: Path) -> None:
    from dockyard.cli.cp import CHUNK, tar_chunks

    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(CHUNK + 123))
    chunks = list(tar_chunks(str(src), "src"))
    assert all(len(c) <= CHUNK for c in chunks)
    out = tmp_path / "out"
    out.mkdir()
    extract(io.BytesIO(b"".join(chunks)), str(out))
    assert (out / "src/big").read_bytes() == (src / "big").read_bytes()


# --- start-up ----------------------------------------------------------------------------------------


def test_building_any_verbs_parser_does_not_import_grpc() -> None:
    code = (
        "import sys\n"
        "import dockyard.cli.__main__ as m\n"
        "from dockyard.cli.verbs import VERBS\n"
        "m.COMMANDS.update({k: v for k, v in VERBS.items() if k not in m.COMMANDS})\n"
        "for verb in VERBS:\n"
        "    m.build_parser(verb)\n"
        "bad = [n for n in sys.modules if n == 'grpc' or n.startswith(('dockyard.api', 'google.protobuf'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importtime_of_run_has_no_grpc() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import dockyard.cli.__main__ as m\n"
            "from dockyard.cli.verbs import VERBS\n"
            "m.COMMANDS.update({k: v for k, v in VERBS.items() if k not in m.COMMANDS})\n"
            "m.build_parser('run')",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "dockyard.cli.spec" in modules
    assert not {m for m in modules if m == "grpc" or m.startswith("grpc.")}
