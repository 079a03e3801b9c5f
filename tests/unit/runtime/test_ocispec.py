"""dockyard.runtime.ocispec without running anything: docker's merge rules, user lookup in an
untrusted rootfs, the seccomp profile conversion, the flag parsers, the etc files and the spec."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.runtime import ocispec, passwd, seccomp
from dockyard.runtime.etcfiles import etc_files
from dockyard.runtime.ocispec import (
    DEFAULT_CAPS,
    DEFAULT_PATH,
    ProcessSpec,
    RunConfig,
    build_spec,
    merge_process,
)
from dockyard.runtime.passwd import ResolvedUser, resolve_user
from dockyard.runtime.runflags import (
    BindMount,
    NetworkMode,
    PortMapping,
    TmpfsMount,
    parse_publish,
    parse_signal,
    parse_tmpfs,
    parse_volume,
)
from dockyard.runtime.seccomp import load_seccomp

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["serve", "--port=80"]}

# --- entrypoint + cmd ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "run", "args"),
    [
        (IMAGE, RunConfig(), ("/entry", "serve", "--port=80")),
        (IMAGE, RunConfig(command=["sh"]), ("/entry", "sh")),
        (IMAGE, RunConfig(entrypoint=["/bin/sh", "-c"]), ("/bin/sh", "-c")),
        (IMAGE, RunConfig(entrypoint=["/bin/sh", "-c"], command=["id"]), ("/bin/sh", "-c", "id")),
        (IMAGE, RunConfig(entrypoint=[""], command=["id", "-u"]), ("id", "-u")),
        (IMAGE, RunConfig(entrypoint=[], command=["id"]), ("id",)),
        ({"Cmd": ["sh"]}, RunConfig(), ("sh",)),
        ({"Cmd": ["sh"]}, RunConfig(command=["echo", "hi"]), ("echo", "hi")),
        ({"Entrypoint": ["/e"], "Cmd": None}, RunConfig(), ("/e",)),
        ({"config": IMAGE, "rootfs": {}}, RunConfig(), ("/entry", "serve", "--port=80")),
    ],
)
def test_entrypoint_and_cmd_merge_like_docker(
    image: dict[str, Any], run: RunConfig, args: tuple[str, ...]
) -> None:
    assert merge_process(image, run).args == args


@pytest.mark.parametrize(
    ("image", "run"),
    [
        ({}, RunConfig()),
        ({"config": None}, RunConfig()),
        (IMAGE, RunConfig(entrypoint=[""])),  # --entrypoint "" drops the image's Cmd too
        (IMAGE, RunConfig(entrypoint=[])),
        ({"Cmd": []}, RunConfig(command=[])),
    ],
)
def test_nothing_to_run_is_no_command_specified(image: dict[str, Any], run: RunConfig) -> None:
    with pytest.raises(InvalidArgument, match=r"^no command specified$"):
        merge_process(image, run)


def test_a_malformed_image_config_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="Cmd must be a list of strings"):
        merge_process({"Cmd": "sh"}, RunConfig())


# --- env, workdir, user, stop signal -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_env", "flags", "tty", "expected"),
    [
        (None, [], False, [f"PATH={DEFAULT_PATH}"]),
        (["PATH=/bin", "A=1"], [], False, ["PATH=/bin", "A=1"]),
        (["A=1", "B=2"], ["A=9", "C=3"], False, [f"PATH={DEFAULT_PATH}", "A=9", "B=2", "C=3"]),
        (["A=1", "B=2"], ["A"], False, [f"PATH={DEFAULT_PATH}", "B=2"]),  # -e A with no value unsets
        (["A=x=y"], ["E="], True, [f"PATH={DEFAULT_PATH}", "TERM=xterm", "A=x=y", "E="]),
        (["TERM=dumb"], [], True, [f"PATH={DEFAULT_PATH}", "TERM=dumb"]),
    ],
)
def test_env_merges_by_key(
    image_env: list[str] | None, flags: list[str], tty: bool, expected: list[str]
) -> None:
    process = merge_process({"Cmd": ["sh"], "Env": image_env}, RunConfig(env=flags, tty=tty))
    assert list(process.env) == expected


@pytest.mark.parametrize("bad", ["=x", "", "A\0B=1"])
def test_a_bad_env_entry_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid environment variable"):
        merge_process({"Cmd": ["sh"]}, RunConfig(env=[bad]))


@pytest.mark.parametrize(
    ("image", "flag", "cwd"),
    [({}, "", "/"), ({"WorkingDir": "/app"}, "", "/app"), ({"WorkingDir": "/app"}, "/w/../srv/", "/srv")],
)
def test_workdir(image: dict[str, Any], flag: str, cwd: str) -> None:
    assert merge_process({"Cmd": ["sh"], **image}, RunConfig(workdir=flag)).cwd == cwd


@pytest.mark.parametrize(("image", "flag"), [({"WorkingDir": "app"}, ""), ({}, "rel/dir")])
def test_a_relative_workdir_is_refused(image: dict[str, Any], flag: str) -> None:
    with pytest.raises(InvalidArgument, match="needs to be an absolute path"):
        merge_process({"Cmd": ["sh"], **image}, RunConfig(workdir=flag))


@pytest.mark.parametrize(
    ("image", "flag", "user"), [({}, "", ""), ({"User": "www"}, "", "www"), ({"User": "www"}, "0:0", "0:0")]
)
def test_user_comes_from_the_flag_else_the_image(image: dict[str, Any], flag: str, user: str) -> None:
    assert merge_process({"Cmd": ["sh"], **image}, RunConfig(user=flag)).user == user


@pytest.mark.parametrize(
    ("image", "flag", "number"),
    [
        ({}, "", 15),
        ({"StopSignal": "SIGQUIT"}, "", 3),
        ({"StopSignal": "SIGQUIT"}, "KILL", 9),
        ({}, "sigint", 2),
        ({}, "9", 9),
        ({}, "RTMIN+3", 37),
        ({}, "SIGRTMAX", 64),
    ],
)
def test_stop_signal(image: dict[str, Any], flag: str, number: int) -> None:
    assert merge_process({"Cmd": ["sh"], **image}, RunConfig(stop_signal=flag)).stop_signal == number


@pytest.mark.parametrize("bad", ["SIGFOO", "0", "65", "-1", "RTMIN+40", ""])
def test_a_bad_signal_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^Invalid signal: "):
        parse_signal(bad)


def test_run_config_normalises_what_the_lead_passes() -> None:
    run = RunConfig(command=None, env=["A=1"], tmpfs=["/run"], network="bridge", labels={"a": "b"})
    assert run.command == () and run.env == ("A=1",)
    assert run.tmpfs == (TmpfsMount("/run", ("noexec", "nosuid", "nodev", "mode=1777")),)
    assert run.network is NetworkMode.SLIRP4NETNS
    with pytest.raises(InvalidArgument, match="network 'overlay' is not supported"):
        RunConfig(network="overlay")


# --- users -------------------------------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
broken line
app:x:1000:1000::/home/app:/bin/sh
huge:x:70000:70000::/:/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:root
app:x:1000:
extra:x:2000:app,daemon
staff:x:50:
big:x:80000:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ResolvedUser(0, 0, (10,))),
        ("root", ResolvedUser(0, 0, (10,))),
        ("app", ResolvedUser(1000, 1000, (2000,))),
        ("1000", ResolvedUser(1000, 1000, (2000,))),
        ("daemon", ResolvedUser(1, 1, (2000,))),
        ("app:staff", ResolvedUser(1000, 50, ())),  # an explicit group: no supplementary groups
        ("app:7", ResolvedUser(1000, 7, ())),
        ("4242", ResolvedUser(4242, 0, ())),  # not in passwd: gid 0, as docker
        ("4242:staff", ResolvedUser(4242, 50, ())),
        ("33:44", ResolvedUser(33, 44, ())),
    ],
)
def test_resolve_user(rootfs: Path, user: str, expected: ResolvedUser) -> None:
    assert resolve_user(rootfs, user) == expected


def test_an_unknown_user_is_dockers_message(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument) as e:
        resolve_user(rootfs, "nobody")
    assert str(e.value) == "unable to find user nobody: no matching entries in passwd file"
    with pytest.raises(
        InvalidArgument, match=r"^unable to find group nope: no matching entries in group file$"
    ):
        resolve_user(rootfs, "app:nope")


@pytest.mark.parametrize("user", ["70000", "0:65536", "huge", "root:big"])
def test_ids_outside_the_mapped_range_are_refused(rootfs: Path, user: str) -> None:
    with pytest.raises(InvalidArgument, match=r"outside the ids this node maps \(0-65535\)"):
        resolve_user(rootfs, user)


def test_no_etc_files_still_allows_numeric_ids(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert resolve_user(tmp_path / "empty", "") == ResolvedUser(0, 0, ())
    assert resolve_user(tmp_path / "empty", "5") == ResolvedUser(5, 0, ())
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(tmp_path / "empty", "app")


def test_a_symlinked_passwd_is_not_followed_out_of_the_rootfs(rootfs: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-passwd"
    secret.write_text("hostonly:x:4321:4321::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(secret)
    with pytest.raises(InvalidArgument, match="/etc/passwd is not a regular file"):
        resolve_user(rootfs, "hostonly")
    # numeric uid:gid never reads the files, so the hostile tree does not matter
    assert resolve_user(rootfs, "7:8") == ResolvedUser(7, 8, ())
    # a relative symlink climbing out is refused the same way
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("../../host-passwd")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(rootfs, "hostonly")


def test_a_symlinked_etc_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("hostonly:x:4321:4321::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="/etc is not a directory"):
        resolve_user(root, "hostonly")


@pytest.mark.timeout(10)
def test_a_fifo_or_directory_passwd_is_refused_without_blocking(rootfs: Path) -> None:
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(rootfs, "app")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").mkdir()
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(rootfs, "app")


def test_a_huge_passwd_is_refused(rootfs: Path) -> None:
    with (rootfs / "etc" / "passwd").open("w") as f:
        f.truncate(passwd.MAX_ETC_FILE + 1)
    with pytest.raises(InvalidArgument, match="larger than"):
        resolve_user(rootfs, "app")


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


def test_parse_volume(tmp_path: Path) -> None:
    assert parse_volume(f"{tmp_path}:/data") == BindMount(str(tmp_path), "/data", False)
    assert parse_volume(f"{tmp_path}/:/data/:ro") == BindMount(str(tmp_path), "/data", True)
    assert parse_volume(f"{tmp_path}:/data:rw,z") == BindMount(str(tmp_path), "/data", False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("myvol:/data", "named volumes are not supported yet"),
        ("/data", "anonymous volumes are not supported yet"),
        ("{tmp}:/data:rx", "invalid mode: rx"),
        ("{tmp}:data", "must be absolute"),
        ("{tmp}:/", "destination can't be '/'"),
        ("{tmp}/missing:/data", "bind source path does not exist: .*/missing"),
        ("{tmp}:/a:ro:x", "invalid volume specification"),
        (":/data", "invalid volume specification"),
    ],
)
def test_parse_volume_errors(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_volume(spec.format(tmp=tmp_path))


# --- etc files ---------------------------------------------------------------------------------------


def test_etc_files_for_slirp4netns(tmp_path: Path) -> None:
    files = etc_files(tmp_path / "etc", "web1", "slirp4netns", ["db:10.0.2.50", "host:host-gateway"])
    hosts, resolv, hostname = files  # unpacks as a tuple
    assert hosts.read_text().startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost")
    assert "10.0.2.100\tweb1\n" in hosts.read_text()
    assert hosts.read_text().endswith("10.0.2.50\tdb\n10.0.2.2\thost\n")
    assert resolv.read_text() == "nameserver 10.0.2.3\n"
    assert hostname.read_text() == "web1\n"
    assert oct(hosts.stat().st_mode & 0o777) == "0o644"


def test_etc_files_for_host_and_none(tmp_path: Path) -> None:
    (tmp_path / "h").write_text("127.0.0.1 localhost\n192.168.1.5 node1")
    (tmp_path / "r").write_text("nameserver 192.168.1.1\nsearch lan\n")
    host = etc_files(
        tmp_path / "a",
        "node1",
        NetworkMode.HOST,
        ["x:1.2.3.4"],
        host_resolv=tmp_path / "r",
        host_hosts=tmp_path / "h",
    )
    assert host.hosts.read_text() == "127.0.0.1 localhost\n192.168.1.5 node1\n1.2.3.4\tx\n"
    assert host.resolv.read_text() == "nameserver 192.168.1.1\nsearch lan\n"
    none = etc_files(tmp_path / "b", "c1", NetworkMode.NONE)
    assert "127.0.0.1\tc1\n" in none.hosts.read_text()
    assert none.resolv.read_text() == ""
    dns = etc_files(tmp_path / "c", "c1", NetworkMode.SLIRP4NETNS, dns=["1.1.1.1", "9.9.9.9"])
    assert dns.resolv.read_text() == "nameserver 1.1.1.1\nnameserver 9.9.9.9\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hostname": "bad host"}, "invalid hostname"),
        ({"extra_hosts": ["db"]}, "invalid IP address in add-host"),
        ({"extra_hosts": ["db:999.1.1.1"]}, "invalid IP address"),
        ({"extra_hosts": [":1.2.3.4"]}, "bad format for add-host"),
        ({"extra_hosts": ["h:host-gateway"], "network": "none"}, "host-gateway needs"),
        ({"dns": ["dns.example"]}, "is not an ip address"),
    ],
)
def test_etc_files_errors(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"hostname": "c1", "network": "slirp4netns", **kwargs}
    with pytest.raises(InvalidArgument, match=message):
        etc_files(tmp_path, **args)


# --- seccomp -----------------------------------------------------------------------------------------

needs_profile = pytest.mark.skipif(
    not seccomp.SECCOMP_PROFILE.exists(),
    reason="containers-common's seccomp.json is not installed (make setup)",
)


def _allowed(profile: dict[str, Any]) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}


def _denied(profile: dict[str, Any]) -> set[str]:
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ERRNO" for n in r["names"]}


@needs_profile
def test_the_default_profile_for_dockers_caps_on_x86_64() -> None:
    profile = load_seccomp(caps=DEFAULT_CAPS, arch="x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 38  # ENOSYS for what the profile does not know
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _allowed(profile)
    assert {"read", "clone", "arch_prctl", "chroot"} <= allowed  # chroot: CAP_SYS_CHROOT is default
    assert not {"bpf", "kexec_file_load", "arm_fadvise64_64", "sync_file_range2"} & allowed
    assert {"bpf", "fanotify_init", "kexec_file_load"} <= _denied(
        profile
    )  # EPERM, not ENOSYS, without CAP_SYS_ADMIN
    for rule in profile["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}  # no includes/excludes leak through
    json.dumps(profile)


@needs_profile
def test_a_syscall_gated_by_a_cap_follows_the_cap() -> None:
    with_admin = load_seccomp(caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, arch="x86_64")
    assert "bpf" in _allowed(with_admin)
    assert "bpf" not in _denied(with_admin)
    without_chroot = load_seccomp(caps=DEFAULT_CAPS - {"CAP_SYS_CHROOT"}, arch="x86_64")
    assert "chroot" not in _allowed(without_chroot)
    assert "chroot" in _denied(without_chroot)


@needs_profile
def test_arches_other_than_this_one() -> None:
    arm = load_seccomp(arch="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arm_fadvise64_64" in _allowed(arm)
    assert not {"arch_prctl", "modify_ldt"} & _allowed(arm)
    assert load_seccomp(arch="amd64")["architectures"][0] == "SCMP_ARCH_X86_64"
    with pytest.raises(InvalidArgument, match="unsupported architecture"):
        load_seccomp(arch="vax")


@needs_profile
def test_the_conversion_is_computed_once_per_caps_and_arch() -> None:
    first = load_seccomp(caps=DEFAULT_CAPS, arch="x86_64")
    assert load_seccomp(caps=set(DEFAULT_CAPS), arch="x86_64") is first
    assert load_seccomp(caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, arch="x86_64") is not first


def test_a_synthetic_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "seccomp.json"
    path.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
                "syscalls": [
                    {"name": "old_style", "action": "SCMP_ACT_ALLOW", "args": None},
                    {"names": ["new_kernel"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.1"}},
                    {"names": ["old_kernel"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                    {"names": ["not_here"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
                    {
                        "names": ["two_caps"],
                        "action": "SCMP_ACT_ALLOW",
                        "includes": {"caps": ["CAP_A", "CAP_B"]},
                    },
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 1,
                        "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                        "comment": "dropped",
                    },
                ],
            }
        )
    )
    profile = load_seccomp(path, caps={"CAP_A"}, arch="x86_64")
    assert "defaultErrnoRet" not in profile
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert profile["syscalls"][:3] == [  # then docker's rules (test_keyrings_and_namespaces_as_docker)
        {"names": ["old_style"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["old_kernel"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        },
    ]
    assert "two_caps" in _allowed(load_seccomp(path, caps={"CAP_A", "CAP_B"}, arch="x86_64"))


def _rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


@needs_profile
def test_keyrings_and_namespaces_as_docker() -> None:
    """containers-common allows keyctl, unshare and clone(CLONE_NEWUSER) to everyone; docker does not."""
    profile = load_seccomp(caps=DEFAULT_CAPS, arch="x86_64")
    for name in ("keyctl", "add_key", "request_key", "unshare", "setns", "mount", "umount2", "bpf"):
        rules = _rules_for(profile, name)
        assert [r["action"] for r in rules] == ["SCMP_ACT_ERRNO"], name
        assert rules[0]["errnoRet"] == 1 and "args" not in rules[0], name  # EPERM, always
    clone = _rules_for(profile, "clone")
    allow = [r for r in clone if r["action"] == "SCMP_ACT_ALLOW"]
    assert allow == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]  # no unconditional clone: a fork is allowed, a new namespace is not
    newuser = 0x10000000
    assert any(r["action"] == "SCMP_ACT_ERRNO" and r["args"][0]["value"] == newuser for r in clone)
    assert [(r["action"], r["errnoRet"]) for r in _rules_for(profile, "clone3")] == [("SCMP_ACT_ERRNO", 38)]
    s390 = _rules_for(load_seccomp(caps=DEFAULT_CAPS, arch="s390x"), "clone")
    assert {a["index"] for r in s390 for a in r.get("args", ())} == {1}

    admin = load_seccomp(caps=DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, arch="x86_64")
    assert {"unshare", "clone", "clone3", "mount"} <= _allowed(admin)
    assert not {"unshare", "clone"} & _denied(admin)
    assert {"keyctl", "add_key", "request_key"} <= _denied(admin) - _allowed(admin)  # even privileged


def test_a_missing_or_broken_profile_is_failed_precondition(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="install containers-common"):
        load_seccomp(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FailedPrecondition, match="is unusable"):
        load_seccomp(tmp_path / "bad.json")
    (tmp_path / "nokey.json").write_text("{}")
    with pytest.raises(FailedPrecondition, match="is unusable"):
        load_seccomp(tmp_path / "nokey.json")


# --- the spec ----------------------------------------------------------------------------------------


def _spec(tmp_path: Path, run: RunConfig, netns: str | None = None, **kw: Any) -> dict[str, Any]:
    process = merge_process({"Cmd": ["sh"], "Env": ["A=1"]}, run)
    files = etc_files(tmp_path / "etc", "c1", run.network)
    args: dict[str, Any] = {
        "uid": 1000,
        "gid": 1000,
        "gids": (2000,),
        "hostname": "c1",
        "netns_path": netns,
        "hosts_file": files.hosts,
        "resolv_file": files.resolv,
        "hostname_file": files.hostname,
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
        **kw,
    }
    return build_spec(process, tmp_path / "rootfs", run, **args)


def _by_dest(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in spec["mounts"]}


def test_the_spec_process(tmp_path: Path) -> None:
    spec = _spec(tmp_path, RunConfig(tty=True, stop_signal="QUIT"))
    assert spec["ociVersion"] == "1.0.2"
    p = spec["process"]
    assert p["terminal"] is True
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert p["args"] == ["sh"]
    assert p["env"] == [f"PATH={DEFAULT_PATH}", "TERM=xterm", "A=1", "HOSTNAME=c1"]
    assert p["cwd"] == "/"
    caps = p["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}  # never inheritable or ambient
    for kind in caps.values():
        assert set(kind) == DEFAULT_CAPS and len(DEFAULT_CAPS) == 14
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = ocispec.NOFILE_LIMIT if hard == resource.RLIM_INFINITY else min(ocispec.NOFILE_LIMIT, hard)
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": expected, "soft": expected}]
    assert p["noNewPrivileges"] is False
    assert "oomScoreAdj" not in p
    assert spec["annotations"]["org.opencontainers.image.stopSignal"] == "3"
    json.dumps(spec)


def test_nofile_never_exceeds_our_hard_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocispec.resource, "getrlimit", lambda _which: (1024, 4096))
    assert _spec(tmp_path, RunConfig())["process"]["rlimits"][0] == {
        "type": "RLIMIT_NOFILE",
        "hard": 4096,
        "soft": 4096,
    }


def test_the_spec_namespaces(tmp_path: Path) -> None:
    types = lambda spec: [n["type"] for n in spec["linux"]["namespaces"]]  # noqa: E731
    slirp = _spec(tmp_path, RunConfig(), netns="/run/netns/x")
    assert types(slirp) == ["pid", "ipc", "uts", "mount", "network"]
    assert slirp["linux"]["namespaces"][-1] == {"type": "network", "path": "/run/netns/x"}
    assert "user" not in types(slirp)  # containers share the node's user namespace
    assert "uidMappings" not in slirp["linux"]
    assert _spec(tmp_path, RunConfig(network="none"))["linux"]["namespaces"][-1] == {"type": "network"}
    assert types(_spec(tmp_path, RunConfig(network="host"))) == ["pid", "ipc", "uts", "mount"]


def test_the_spec_linux_section(tmp_path: Path) -> None:
    linux = _spec(tmp_path, RunConfig())["linux"]
    assert linux["maskedPaths"] == list(ocispec.MASKED_PATHS)
    assert "/proc/kcore" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    assert linux["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert not {"resources", "cgroupsPath", "sysctl", "devices"} & set(linux)
    assert "seccomp" not in _spec(tmp_path, RunConfig(), seccomp=None)["linux"]


def test_the_default_mounts(tmp_path: Path) -> None:
    spec = _spec(tmp_path, RunConfig())
    mounts = _by_dest(spec)
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
        "/etc/hosts", "/etc/resolv.conf", "/etc/hostname",
    ]  # fmt: skip
    assert "gid=5" in mounts["/dev/pts"]["options"] and "newinstance" in mounts["/dev/pts"]["options"]
    assert "size=65536k" in mounts["/dev/shm"]["options"]
    assert mounts["/sys"]["type"] == "sysfs"
    assert mounts["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": str(tmp_path / "etc" / "hosts"),
        "options": ["rbind", "rprivate", "rw"],
    }
    assert spec["root"] == {"path": str(tmp_path / "rootfs"), "readonly": False}
    assert spec["hostname"] == "c1"


def test_host_network_binds_sys_read_only(tmp_path: Path) -> None:
    sys_mount = _by_dest(_spec(tmp_path, RunConfig(network="host")))["/sys"]
    assert sys_mount["type"] == "bind" and sys_mount["source"] == "/sys"
    assert {"rbind", "ro"} <= set(sys_mount["options"])


def test_read_only_rootfs_makes_the_etc_files_read_only(tmp_path: Path) -> None:
    spec = _spec(tmp_path, RunConfig(read_only=True))
    assert spec["root"]["readonly"] is True
    assert _by_dest(spec)["/etc/resolv.conf"]["options"][-1] == "ro"


def test_user_mounts_come_after_defaults_parents_first_and_replace_same_destination(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    run = RunConfig(
        binds=[
            BindMount(str(tmp_path / "src"), "/data/deep/er", True),
            BindMount(str(tmp_path / "src"), "/data"),
        ],
        tmpfs=["/dev/shm:size=1m", "/run"],
    )
    spec = _spec(tmp_path, run)
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/dev/shm") == 1
    assert dests[-4:] == ["/run", "/data", "/dev/shm", "/data/deep/er"]
    mounts = _by_dest(spec)
    assert mounts["/dev/shm"]["options"] == ["noexec", "nosuid", "nodev", "mode=1777", "size=1m"]
    assert mounts["/data/deep/er"]["options"][:2] == ["rbind", "rprivate"]
    assert mounts["/data/deep/er"]["options"][-1] == "ro"
    assert mounts["/data"]["options"][-1] == "rw"


def test_a_user_set_hostname_env_wins(tmp_path: Path) -> None:
    spec = _spec(tmp_path, RunConfig(env=["HOSTNAME=mine"]))
    assert [e for e in spec["process"]["env"] if e.startswith("HOSTNAME=")] == ["HOSTNAME=mine"]


def test_build_spec_refuses_unmapped_ids(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="outside the ids"):
        _spec(tmp_path, RunConfig(), uid=65536)


def test_process_spec_is_a_value() -> None:
    p = ProcessSpec(("sh",), (), "/", "", False, False, 15)
    assert p == ProcessSpec(("sh",), (), "/", "", False, False, 15)
