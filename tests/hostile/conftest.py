"""The hostile suite: every finding of issue #9 replayed against a real registry process.

Each test asserts the status the registry answers, that nothing stored was lost or leaked, and that
the process still serves afterwards. Helpers (start/stop, tokens, pushes) are in hostile_helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_helpers import Proc, start, stop


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Proc]:
    """A registry without auth, default limits."""
    proc = start(tmp_path / "registry")
    try:
        yield proc
    finally:
        stop(proc)
