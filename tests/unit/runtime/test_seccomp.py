"""dockyard.runtime.seccomp: containers-common's profile converted, and aligned with docker's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.runtime import seccomp
from dockyard.runtime.privileges import DEFAULT_CAPS
from dockyard.runtime.seccomp import load_seccomp

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
