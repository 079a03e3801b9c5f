"""System tools are run by absolute path, found even when PATH lacks the sbin directories
(an ordinary user's login shell on Debian: `network create` failed with "nsenter: failed to
execute sysctl")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core.tools import find_tool
from dockyard.runtime.netns import NodeNetns


@pytest.fixture
def login_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")


@pytest.mark.usefixtures("login_path")
def test_sbin_tools_are_found_without_sbin_in_path() -> None:
    for name in ("sysctl", "iptables", "ip"):
        found = find_tool(name)
        assert found is not None and os.path.isabs(found) and os.access(found, os.X_OK), name


@pytest.mark.usefixtures("login_path")
def test_the_node_network_runs_every_tool_by_absolute_path(tmp_path: Path) -> None:
    netns = NodeNetns(tmp_path)
    for binary in (netns.ip_binary, netns.iptables, netns.sysctl, netns.slirp_binary):
        assert os.path.isabs(binary) and os.access(binary, os.X_OK), binary


def test_a_missing_tool_is_none() -> None:
    assert find_tool("no-such-tool-dockyard") is None
