"""Helper processes that outlive the runtime service: slirp4netns and the port forwarders.

They must not be started with ``asyncio.create_subprocess_exec``: closing the event loop closes
every subprocess transport, and a transport whose process still runs kills it. A graceful stop
of the service (``dockyard up`` stopped and started) then took every container's network and
published ports with it, while ``kill -9`` of the service did not. ``subprocess.Popen`` owns no
such transport; a daemon thread reaps the process should it end while the service lives.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path


def start(argv: Sequence[str], *, pass_fds: Sequence[int] = (), cwd: Path | None = None) -> int:
    """Start ``argv`` in its own session, stdio on /dev/null; returns its pid. Blocking (fork+exec)."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
        cwd=cwd,
    )
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


def running(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process runs ``name`` (in its command line), else None.

    The command line, not the name: a zombie has an empty one (the host's init here does not
    reap what it inherits), and a reused pid runs something else.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if name.encode() not in f.read():
                return None
    except (OSError, ValueError, IndexError):
        return None
    return pid
