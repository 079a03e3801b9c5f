"""The state directory is the platform's alone: directories 0700, files 0600.

New files get there by the umask (:data:`UMASK`), set by ``dockyard up`` before it starts
anything and by every service process (:func:`dockyard.adapters.host.run_service`), so what
nats-server, conmon, runc and slirp4netns write inherits it. :func:`tighten` fixes a tree made
before that, once per ``up``.

Image and container content is not the platform's to change: a layer's ``fs``, a snapshot's
``upper``/``work``/``merged``, a volume's ``_data``, the builder's scratch copies keep the modes the
image or the container gave them — a 0700 parent is what keeps other users out. Documented
exceptions: the gateway's socket (0660, group ``dockyard``; its directory 0750 when root starts
the platform), the hosts/hostname/resolv.conf files bind-mounted into containers (0644, a
container's non-root user reads them).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath

#: The umask of the supervisor and every service: group and others get nothing.
UMASK = 0o077

#: Relative to the state directory: content trees that are neither entered nor changed.
CONTENT: tuple[str, ...] = (
    "runtime/images/layers/*/fs",
    "runtime/images/layers/.tmp-*",
    "runtime/snapshots/*/upper",
    "runtime/snapshots/*/work",
    "runtime/snapshots/*/merged",
    "runtime/snapshots/*/empty",
    "runtime/volumes/*/*",
    "runtime/containers/*/etc",
    "runtime/networks/*/*/etc",
    "builder/scratch/*",
)


def _content(rel: PurePath) -> bool:
    return any(rel.match(pattern) for pattern in CONTENT)


def tighten(root: Path) -> int:
    """Take group and other bits off ``root`` and what the platform made in it; returns how many
    paths changed. Content trees (:data:`CONTENT`), symlinks and sockets are left alone; a path
    that cannot be changed (an id of the node's namespace) is skipped."""
    changed = _tighten_one(root)
    for top, dirs, files in os.walk(root):
        here = Path(top)
        dirs[:] = [d for d in dirs if not _content((here / d).relative_to(root))]
        for name in (*dirs, *files):
            changed += _tighten_one(here / name)
    return changed


def _tighten_one(path: Path) -> int:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode) or not st.st_mode & 0o077:
            return 0
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
    except OSError:
        return 0
    return 1
