"""A container's mounts as the runtime keeps them: one structured :class:`MountSpec` each.

A leaf: the records persist these, the volume store resolves and mounts them, admission turns
binds and tmpfs into the OCI spec's mounts. Mounts arrive structured (the API's ``Mount``, from
``--mount`` and ``-v`` parsed by the client), so nothing here goes through a ``-v`` string but
:func:`parse_mount`, kept for container records written before mounts were structured.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dockyard.core.errors import InvalidArgument
from dockyard.runtime import runflags

#: docker's volume name rule.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
#: A volume is a directory named after it: a longer name is ENAMETOOLONG on every filesystem.
NAME_MAX = 255


class Kind(StrEnum):
    BIND = "bind"  # source: an absolute host path
    VOLUME = "volume"  # source: a volume's name
    ANONYMOUS = "anonymous"  # a volume still to be made (only before VolumeStore.resolve)
    TMPFS = "tmpfs"  # no source; tmpfs_size (bytes, 0: unbounded) and tmpfs_mode (0: 1777)


@dataclass(frozen=True, slots=True)
class MountSpec:
    """One container mount, as persisted in its config."""

    kind: Kind
    source: str
    target: str
    read_only: bool = False
    no_copy: bool = False  # a volume: not filled from the image when empty
    tmpfs_size: int = 0
    tmpfs_mode: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MountSpec:
        return cls(**{**d, "kind": Kind(d["kind"])})

    def tmpfs(self) -> runflags.TmpfsMount:
        """A tmpfs mount's OCI form: docker's defaults, with its mode, size and ro."""
        options = [o for o in runflags.TMPFS_DEFAULTS if not o.startswith("mode=")]
        options.append(f"mode={self.tmpfs_mode:04o}" if self.tmpfs_mode else "mode=1777")
        options += [f"size={self.tmpfs_size}"] if self.tmpfs_size else []
        options += ["ro"] if self.read_only else []
        return runflags.TmpfsMount(self.target, tuple(options))


def container_path(path: str, spec: str) -> str:
    """An absolute container path, normalised; never "/"."""
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount {spec!r}: the container path {path!r} must be absolute")
    clean = os.path.normpath(path)
    if clean in ("/", "//"):
        raise InvalidArgument(f"invalid mount {spec!r}: the container path cannot be '/'")
    return clean


def check_name(name: str) -> str:
    """A volume name, or InvalidArgument saying what is wrong with it."""
    if len(name.encode()) > NAME_MAX:
        raise InvalidArgument(f"invalid volume name {name[:32]!r}…: longer than {NAME_MAX} bytes")
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid volume name {name!r}: it must be 2+ characters of [a-zA-Z0-9_.-], "
            "starting with a letter or digit (a host path must be absolute)"
        )
    return name


def mount(
    type_: str,
    source: str,
    target: str,
    read_only: bool = False,
    no_copy: bool = False,
    tmpfs_size: int = 0,
    tmpfs_mode: int = 0,
) -> MountSpec:
    """One ``--mount``-style mount, checked as far as its fields alone can say (a bind's source is
    checked for existence at create). ``type_`` "" is "bind", the API's default before volumes."""
    what = f"type={type_ or 'bind'},source={source},target={target}"
    if not target:
        raise InvalidArgument(f"invalid mount ({what}): a target is required")
    target = container_path(target, what)
    if type_ not in ("", "bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid mount type {type_!r}: use bind, volume or tmpfs")
    if type_ != "tmpfs" and (tmpfs_size or tmpfs_mode):
        raise InvalidArgument(f"invalid mount ({what}): tmpfs options need type=tmpfs")
    if type_ != "volume" and no_copy:
        raise InvalidArgument(f"invalid mount ({what}): volume-nocopy needs type=volume")
    if type_ == "tmpfs":
        if source:
            raise InvalidArgument(f"invalid mount ({what}): a tmpfs has no source")
        if tmpfs_size < 0 or not 0 <= tmpfs_mode <= 0o7777:
            raise InvalidArgument(f"invalid mount ({what}): bad tmpfs-size or tmpfs-mode")
        return MountSpec(Kind.TMPFS, "", target, read_only, tmpfs_size=tmpfs_size, tmpfs_mode=tmpfs_mode)
    if type_ == "volume":
        if source.startswith("/"):
            raise InvalidArgument(f"invalid mount ({what}): a volume's source is a name; use type=bind")
        if not source:
            return MountSpec(Kind.ANONYMOUS, "", target, read_only, no_copy)
        return MountSpec(Kind.VOLUME, check_name(source), target, read_only, no_copy)
    if not source.startswith("/"):
        raise InvalidArgument(f"invalid mount ({what}): a bind's source must be an absolute host path")
    return MountSpec(Kind.BIND, os.path.normpath(source), target, read_only)


def parse_mount(spec: str) -> MountSpec:
    """A ``-v`` string: ``/host:/ctr[:opts]``, ``NAME:/ctr[:opts]`` or ``/ctr[:opts]`` (anonymous),
    as records written before mounts were structured hold them.

    Options: ``ro``, ``rw``, ``z``/``Z`` (accepted, no SELinux here) and, for volumes, ``nocopy``.
    """
    parts = spec.split(":")
    if not spec or len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    opts = ""
    if len(parts) == 3:
        source, target, opts = parts
    elif len(parts) == 2 and parts[1].startswith("/"):
        source, target = parts
    elif len(parts) == 2 and parts[0].startswith("/"):  # "/ctr:ro"
        source, target, opts = "", parts[0], parts[1]
    elif len(parts) == 2:  # "name:relative": refused below, for its path
        source, target = parts
    else:
        source, target = "", parts[0]
    if len(parts) == 3 and not source:
        raise InvalidArgument(f"invalid volume specification: {spec!r}")
    read_only = no_copy = False
    for opt in filter(None, opts.split(",")):
        if opt == "ro":
            read_only = True
        elif opt == "nocopy" and not source.startswith("/"):
            no_copy = True
        elif opt not in ("rw", "z", "Z"):
            raise InvalidArgument(f"invalid mode {opt!r} in volume specification {spec!r}")
    target = container_path(target, spec)
    if not source:
        return MountSpec(Kind.ANONYMOUS, "", target, read_only, no_copy)
    if source.startswith("/"):
        return MountSpec(Kind.BIND, os.path.normpath(source), target, read_only)
    return MountSpec(Kind.VOLUME, check_name(source), target, read_only, no_copy)
