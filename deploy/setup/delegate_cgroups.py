"""host.sh's cgroups step: `dockyard system delegate USER` for every member of a group (default
`dockyard`), through the same function, so the shell and the CLI cannot disagree on the layout.

Runs with the system python3 (the venv may not exist yet): it imports only dockyard.core.cgroups,
which needs nothing but the standard library. Prints one line per change (host.sh counts them);
warnings and errors go to stderr; exit 1 when a member's subtree cannot be made.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from dockyard.core.cgroups import GROUP, DelegationError, delegate, group_members  # noqa: E402


def main(argv: list[str]) -> int:
    group = argv[0] if argv else GROUP
    members = group_members(group)
    if not members:
        print(f"host.sh: warning: group {group} has no members: no cgroup delegated", file=sys.stderr)
    for user in members:
        try:
            done = delegate(user)
        except DelegationError as exc:
            print(f"host.sh: error: cgroup subtree for {user}: {exc}", file=sys.stderr)
            return 1
        for line in done.actions:
            print(line)
        for line in done.warnings:
            print(f"host.sh: warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
