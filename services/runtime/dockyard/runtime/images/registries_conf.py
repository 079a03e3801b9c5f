"""Read registries.conf(5) from where podman, buildah and skopeo read it (parsing: ``core.registries``).

In order, each overriding what came before (containers-registries.conf.d(5)):

1. the main file: ``$XDG_CONFIG_HOME/containers/registries.conf`` (``~/.config/…``) when it
   exists, else ``/etc/containers/registries.conf``;
2. ``/etc/containers/registries.conf.d/*.conf`` — unless the user's main file was read;
3. the user's ``registries.conf.d/*.conf``;

drop-ins in name order. ``CONTAINERS_REGISTRIES_CONF=<file>`` pins the configuration: that file
alone is read (no drop-ins, not the machine's), so a test or a lab gets exactly what it wrote.
Missing files are no configuration; a file that cannot be parsed is one FailedPrecondition line naming it.

Read at every pull (a few small files), so an edit applies without restarting the platform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dockyard.core.errors import FailedPrecondition
from dockyard.core.registries import RegistriesConf, merge, parse_conf

ENV = "CONTAINERS_REGISTRIES_CONF"
SYSTEM_DIR = Path("/etc/containers")


def config_files(environ: Mapping[str, str] | None = None, system_dir: Path = SYSTEM_DIR) -> list[Path]:
    """The files to read, in order (existing or not)."""
    env = os.environ if environ is None else environ
    pinned = env.get(ENV)
    if pinned:
        return [Path(pinned)]
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    user_dir = Path(config_home) / "containers"
    user_main = user_dir / "registries.conf"
    if user_main.is_file():
        return [user_main, *_dropins(user_dir / "registries.conf.d")]
    return [
        system_dir / "registries.conf",
        *_dropins(system_dir / "registries.conf.d"),
        *_dropins(user_dir / "registries.conf.d"),
    ]


def _dropins(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".conf" and p.is_file())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def load(environ: Mapping[str, str] | None = None, system_dir: Path = SYSTEM_DIR) -> RegistriesConf:
    env = os.environ if environ is None else environ
    pinned = env.get(ENV)
    if pinned and not Path(pinned).is_file():
        raise FailedPrecondition(f"{ENV} names {pinned}, which is not a file", file=pinned)
    confs = []
    for path in config_files(env, system_dir):
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, UnicodeDecodeError) as e:
            raise FailedPrecondition(
                f"registries configuration {path}: cannot read it: {e}", file=str(path)
            ) from None
        confs.append(parse_conf(text, str(path)))
    return merge(confs)
