"""How the CLI talks to people: one readable line per error, tables, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def fail(exc: BaseException) -> int:
    """Print one line for ``exc`` on stderr and return the exit status. Never a traceback."""
    from dockyard.core.errors import DockyardError

    if not isinstance(exc, DockyardError):
        try:
            import grpc

            from dockyard.adapters.grpc.errors import to_native

            if isinstance(exc, grpc.RpcError):
                exc = to_native(exc)
        except ImportError:
            pass
    if isinstance(exc, DockyardError):
        print(f"dockyard: {exc}", file=sys.stderr)
        return 1
    print(f"dockyard: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 2


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A docker-style table: upper-case headers, columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
