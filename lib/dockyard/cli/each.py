"""Docker's way with several names: act on each, print the name on success, one error line per
failure, and exit 1 if any failed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def each(names: Iterable[str], action: Callable[[str], Any], *, echo: bool = True) -> int:
    from dockyard.cli.output import fail

    status = 0
    for name in names:
        try:
            action(name)
        except Exception as exc:
            fail(exc)
            status = 1
            continue
        if echo:
            print(name, flush=True)
    return status
