"""docker's --detach-keys: parsing, and finding the sequence in stdin as it is read."""

from __future__ import annotations

import pytest

from dockyard.cli.stdio import _scan, parse_detach_keys
from dockyard.core.errors import InvalidArgument


def test_parse() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-_") == b"\x00\x1f"
    assert parse_detach_keys("") == b""  # detaching disabled


@pytest.mark.parametrize("bad", ["ctrl-", "ctrl-pq", "shift-a", "ctrl-p,,ctrl-q", "ctrl-1"])
def test_bad_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid detach keys"):
        parse_detach_keys(bad)


def test_scan_passes_what_is_not_the_sequence() -> None:
    keys = b"\x10\x11"
    assert _scan(b"ls\r", keys) == (b"ls\r", b"")
    assert _scan(b"ab\x10\x11cd", keys) == (b"ab", keys)  # typed: what follows is dropped
    assert _scan(b"ab\x10", keys) == (b"ab", b"\x10")  # cut by the read: held back
    assert _scan(b"\x10" + b"x", keys) == (b"\x10x", b"")  # it stopped matching: sent on
    assert _scan(b"\x10\x10\x11", keys) == (b"\x10", keys)
