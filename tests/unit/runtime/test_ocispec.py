"""dockyard.runtime.ocispec without running anything: docker's merge rules and the spec."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.errors import InvalidArgument
from dockyard.runtime import ocispec, privileges
from dockyard.runtime.etcfiles import etc_files
from dockyard.runtime.ocispec import (
    DEFAULT_PATH,
    ProcessSpec,
    RunConfig,
    build_spec,
    merge_process,
)
from dockyard.runtime.privileges import DEFAULT_CAPS
from dockyard.runtime.runflags import BindMount, NetworkMode, TmpfsMount

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


def test_run_config_normalises_what_the_lead_passes() -> None:
    run = RunConfig(command=None, env=["A=1"], tmpfs=["/run"], network="bridge", labels={"a": "b"})
    assert run.command == () and run.env == ("A=1",)
    assert run.tmpfs == (TmpfsMount("/run", ("noexec", "nosuid", "nodev", "mode=1777")),)
    assert run.network is NetworkMode.SLIRP4NETNS
    with pytest.raises(InvalidArgument, match="network 'overlay' is not supported"):
        RunConfig(network="overlay")


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


def test_cap_add_and_drop_change_dockers_default_set(tmp_path: Path) -> None:
    caps = _spec(tmp_path, RunConfig(cap_add=["net_admin"], cap_drop=["CAP_CHOWN", "kill"]))["process"]
    bounding = set(caps["capabilities"]["bounding"])
    assert "CAP_NET_ADMIN" in bounding and not {"CAP_CHOWN", "CAP_KILL"} & bounding
    assert "CAP_SETUID" in bounding and "CAP_SYS_ADMIN" not in bounding
    only = _spec(tmp_path, RunConfig(cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"]))["process"]
    assert only["capabilities"]["effective"] == ["CAP_NET_BIND_SERVICE"]
    with pytest.raises(InvalidArgument, match="no such capability"):
        RunConfig(cap_add=["FLY"])


def test_privileged_is_every_capability_without_filter_or_masks(tmp_path: Path) -> None:
    spec = _spec(tmp_path, RunConfig(privileged=True, cap_drop=["ALL"]))
    assert len(spec["process"]["capabilities"]["bounding"]) == len(privileges.ALL_CAPS)
    assert not {"seccomp", "maskedPaths", "readonlyPaths"} & set(spec["linux"])
    plain = _spec(tmp_path, RunConfig())["linux"]
    assert {"seccomp", "maskedPaths", "readonlyPaths"} <= set(plain)


def test_init_runs_the_command_as_its_child(tmp_path: Path) -> None:
    init = tmp_path / "catatonit"
    spec = _spec(tmp_path, RunConfig(command=["sleep", "1"], init=True), init_binary=init)
    assert spec["process"]["args"] == [privileges.INIT_PATH, "--", "sleep", "1"]
    mount = _by_dest(spec)[privileges.INIT_PATH]
    assert mount["source"] == str(init) and "ro" in mount["options"]
    with pytest.raises(InvalidArgument):
        _spec(tmp_path, RunConfig(init=True))  # no binary to bind
