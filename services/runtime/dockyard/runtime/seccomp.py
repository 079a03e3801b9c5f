"""The OCI ``linux.seccomp`` object: containers-common's profile, converted and brought in line
with docker's default for a capability set and architecture.

Separate from the spec because it is a converter of its own (a file read once and cached per
profile version, caps and arch, ≈ 0.4 ms the first time) whose result the caller passes to
:func:`dockyard.runtime.ocispec.build_spec`; a container may also run without one.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dockyard.core.errors import FailedPrecondition, InvalidArgument
from dockyard.runtime.privileges import DEFAULT_CAPS

#: The default seccomp profile, from Debian's containers-common.
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")

#: uname -m (or Go's name) → (the arch name profiles use in includes/excludes, libseccomp's name).
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i386": ("x86", "SCMP_ARCH_X86"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "arm": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def _kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _rule_applies(rule: Mapping[str, Any], caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if arch in (excludes.get("arches") or ()):
        return False
    if not set(includes.get("caps") or ()) <= caps:
        return False
    if caps & set(excludes.get("caps") or ()):
        return False
    min_kernel = includes.get("minKernel")
    if min_kernel:
        m = re.match(r"(\d+)\.(\d+)", str(min_kernel))
        if m and kernel < (int(m.group(1)), int(m.group(2))):
            return False
    return True


def _convert_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
    out: dict[str, Any] = {"names": list(names), "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = int(rule["errnoRet"])
    if rule.get("args"):
        out["args"] = [
            {"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
            for a in rule["args"]
        ]
    return out


#: What docker's default profile (moby profiles/seccomp/default.json) allows only with CAP_SYS_ADMIN
#: and containers-common's allows to everyone. Unprivileged, the kernel refuses most of them in our
#: user namespace anyway; ``unshare``/``clone`` with CLONE_NEWUSER it does not: a nested user
#: namespace hands its creator every capability inside it, and the kernel surface that goes with.
_ADMIN_ONLY: frozenset[str] = frozenset(
    {
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    }
)  # fmt: skip
#: Never allowed, as in docker's profile: the kernel's key quota is per user, and every container
#: of the platform is the same host user, so one container joining keyrings starves all the others.
_NEVER: frozenset[str] = frozenset({"keyctl", "add_key", "request_key"})
#: clone(2) flags that make a namespace: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
_CLONE_NAMESPACES = 0x7E020000
_EPERM, _ENOSYS = 1, 38


def _align_with_docker(
    rules: list[dict[str, Any]], caps: frozenset[str], go_arch: str
) -> list[dict[str, Any]]:
    """containers-common's converted ``rules`` as docker's profile has them for ``caps``.

    Takes :data:`_NEVER` (and, without CAP_SYS_ADMIN, :data:`_ADMIN_ONLY`) out of every allow
    rule, then denies them with EPERM; without CAP_SYS_ADMIN ``clone`` stays allowed only when its
    flags make no namespace (docker's masked compare: the flags argument is the second on s390)
    and ``clone3``, whose flags seccomp cannot read, is ENOSYS so that libc falls back to clone.
    """
    gated = _NEVER if "CAP_SYS_ADMIN" in caps else _NEVER | _ADMIN_ONLY
    out: list[dict[str, Any]] = []
    for rule in rules:
        if rule["action"] == "SCMP_ACT_ALLOW" and gated & set(rule["names"]):
            names = [n for n in rule["names"] if n not in gated]
            if not names:
                continue
            rule = {**rule, "names": names}
        out.append(rule)
    unconditional = {n for r in out if not r.get("args") for n in r["names"]}
    denied = sorted(gated - unconditional - {"clone", "clone3"})
    if denied:
        out.append({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM})
    if "clone" in gated:
        index = 1 if go_arch in ("s390", "s390x") else 0
        out.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": index, "value": _CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            }
        )
        for bit in range(32):  # EPERM (not the default ENOSYS) for each namespace flag
            if _CLONE_NAMESPACES & (1 << bit):
                arg = {"index": index, "value": 1 << bit, "valueTwo": 1 << bit, "op": "SCMP_CMP_MASKED_EQ"}
                out.append(
                    {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM, "args": [arg]}
                )
        out.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return out


@functools.lru_cache(maxsize=32)
def _load_seccomp_cached(
    path: str, _mtime_ns: int, _size: int, caps: frozenset[str], arch: str, kernel: tuple[int, int]
) -> dict[str, Any]:
    go_arch, native = _ARCHES[arch]
    try:
        profile = json.loads(Path(path).read_bytes())
        architectures = [native]
        for entry in profile.get("archMap") or ():
            if entry["architecture"] == native:
                architectures += list(entry.get("subArchitectures") or ())
        if not profile.get("archMap") and profile.get("architectures"):
            architectures = list(profile["architectures"])
        out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": architectures}
        if profile.get("defaultErrnoRet") is not None:
            out["defaultErrnoRet"] = int(profile["defaultErrnoRet"])
        if profile.get("flags"):
            out["flags"] = list(profile["flags"])
        out["syscalls"] = _align_with_docker(
            [
                _convert_rule(rule)
                for rule in profile.get("syscalls") or ()
                if _rule_applies(rule, caps, go_arch, kernel)
            ],
            caps,
            go_arch,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FailedPrecondition(f"seccomp profile {path} is unusable: {e!r}") from e
    return out


def load_seccomp(
    path: Path = SECCOMP_PROFILE, *, caps: Iterable[str] = DEFAULT_CAPS, arch: str | None = None
) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object from a containers-common/moby profile, for these caps and arch.

    Rules whose ``includes`` (arches, every cap, minKernel) or ``excludes`` (arches, any cap) do
    not fit are dropped; ``archMap`` becomes ``architectures`` (native arch + its sub-arches).
    Where containers-common allows more than docker's default profile (keyrings; namespaces and
    mounts without CAP_SYS_ADMIN), docker's rules replace its own (:func:`_align_with_docker`).
    ``arch`` is ``uname -m`` (default: this machine's) or Go's name. Parsed once per (file
    version, caps, arch): later calls cost one ``stat``, and return the *same* dict, which callers
    must not mutate. An unreadable or malformed profile is FailedPrecondition.
    """
    arch = arch or platform.machine()
    if arch not in _ARCHES:
        raise InvalidArgument(f"seccomp: unsupported architecture {arch!r}")
    try:
        st = os.stat(path)
    except OSError as e:
        raise FailedPrecondition(
            f"seccomp profile {path} is missing ({e.strerror}): install containers-common"
        ) from e
    return _load_seccomp_cached(
        str(path), st.st_mtime_ns, st.st_size, frozenset(caps), arch, _kernel_version()
    )
