"""Finding the host's system tools by absolute path.

A login shell of an ordinary user has no ``/usr/sbin`` in ``PATH`` on Debian, yet ``sysctl``,
``iptables`` and ``ip`` live there, and a bare name handed to ``nsenter`` then fails inside the
namespace ("failed to execute sysctl"). So every tool the platform runs is looked up here: first
in ``$PATH``, then in the system directories, and used by its absolute path.
"""

from __future__ import annotations

import shutil

SYSTEM_DIRS = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_tool(*names: str) -> str | None:
    """The absolute path of the first of ``names`` found in ``$PATH`` or the system dirs, or None."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=SYSTEM_DIRS)
        if found:
            return found
    return None
