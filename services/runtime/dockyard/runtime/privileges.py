"""What a container may do: docker's capability set with ``--cap-add``/``--cap-drop``, rootless
``--privileged``, and the ``--init`` binary.

Everything here is bounded by the user namespace the runtime runs in: a capability a container
gets is that namespace's, never the host's, so even ``--privileged`` cannot reach past the
unprivileged user. That is podman's rootless meaning of the flag, which we follow: every
capability, no seccomp filter and no masked or read-only kernel paths. Host devices are not
added (the user could open few of them anyway).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from dockyard.core.errors import FailedPrecondition, InvalidArgument

#: docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS: frozenset[str] = frozenset(
    {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    }
)  # fmt: skip
#: Every capability Linux defines (capability.h, up to 6.x), in number order.
ALL_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
#: Where ``--init``'s binary is bound in the container (podman's is /run/podman-init).
INIT_PATH = "/run/dockyard-init"
#: Where the init may be on the node: Debian's catatonit package, or podman's copy.
INIT_CANDIDATES = ("catatonit", "/usr/libexec/podman/catatonit")


def _canonical(name: str, flag: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    cap = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if cap not in ALL_CAPS:
        raise InvalidArgument(f"invalid {flag} {name!r}: no such capability (e.g. NET_ADMIN, or ALL)")
    return cap


def check(cap_add: Iterable[str], cap_drop: Iterable[str]) -> None:
    """Every name is a capability or ALL (InvalidArgument naming the first that is not)."""
    for name in cap_add:
        _canonical(name, "--cap-add")
    for name in cap_drop:
        _canonical(name, "--cap-drop")


def capabilities(cap_add: Iterable[str], cap_drop: Iterable[str], privileged: bool) -> frozenset[str]:
    """The set a container runs with: docker's default, drops first (``ALL`` drops every one), then
    adds (``ALL`` adds every one); ``privileged`` is every capability, whatever else is asked."""
    if privileged:
        return frozenset(ALL_CAPS)
    drop = {_canonical(n, "--cap-drop") for n in cap_drop}
    add = {_canonical(n, "--cap-add") for n in cap_add}
    caps = set() if "ALL" in drop else set(DEFAULT_CAPS) - drop
    return frozenset(ALL_CAPS) if "ALL" in add else frozenset(caps | add)


def init_binary() -> Path:
    """The node's init for ``--init``: a static binary, bound read-only into the container."""
    for candidate in INIT_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return Path(found)
    raise FailedPrecondition("--init needs catatonit on this node (apt install catatonit)")
