"""Root hands over to the platform's unprivileged user.

``dockyard up`` and ``dockyard doctor`` run as root on lab machines by default; the platform
itself never does. Both re-execute themselves as the user ``make setup`` created (``dockyard``,
or ``$DOCKYARD_USER``) with ``setpriv``, keeping the ``DOCKYARD_*`` environment.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from dockyard.core.errors import FailedPrecondition


def platform_user() -> pwd.struct_passwd:
    name = os.environ.get("DOCKYARD_USER", "dockyard")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise FailedPrecondition(
            f"running as root, and the unprivileged user {name!r} the platform runs as does not exist: "
            "run `make setup` (or pass --allow-root)"
        ) from None


def give_to(user: pwd.struct_passwd, directory: Path) -> None:
    """Make ``directory`` (created if missing, 0700) and everything in it belong to ``user``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # the state dir: the platform's alone (dockyard.core.private)
    if directory.stat().st_uid == user.pw_uid:
        return
    for root, dirs, files in os.walk(directory):
        for entry in (root, *(os.path.join(root, n) for n in dirs + files)):
            os.lchown(entry, user.pw_uid, user.pw_gid)


def give_socket_dir(user: pwd.struct_passwd, directory: Path) -> None:
    """Prepare the directory of the gateway's socket for ``user``: 0750, ``user``:dockyard.

    Only a directory this creates, or the platform's own run directory (/run/dockyard), is
    changed: an existing directory someone pointed ``--listen`` into is left as it is.
    """
    from dockyard.adapters.host import platform_group, run_dir

    if directory.exists() and directory.resolve() != run_dir().resolve():
        return
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        gid = grp.getgrnam(platform_group()).gr_gid
    except KeyError:
        gid = user.pw_gid
    os.chown(directory, user.pw_uid, gid)
    directory.chmod(0o750)


def reexec_as(user: pwd.struct_passwd, cli_args: list[str]) -> NoReturn:
    """Replace this process with ``python -m dockyard.cli <cli_args>`` running as ``user``."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise FailedPrecondition("setpriv not found (package util-linux): run `make setup`")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        **{k: v for k, v in os.environ.items() if k.startswith("DOCKYARD_") and k != "DOCKYARD_USER"},
    }
    ids = ["--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--init-groups"]
    os.execve(setpriv, [setpriv, *ids, "--", sys.executable, "-m", "dockyard.cli", *cli_args], env)
