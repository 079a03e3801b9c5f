"""What the build e2e tests share: making a context directory, reading plain progress.

Not a test module (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path


def build_context(root: Path, dockerfile: str, files: Mapping[str, str | bytes] | None = None) -> Path:
    """``root`` with a Dockerfile and ``files`` (name → text or bytes), readable by the builder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            (root / name).write_bytes(data)
        else:
            (root / name).write_text(data)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def plain_steps(output: str) -> dict[str, str]:
    """Plain progress → {step title: "CACHED" | "DONE"}, Dockerfile steps only (no FROM lines)."""
    titles: dict[str, str] = {}
    result: dict[str, str] = {}
    for line in output.splitlines():
        m = re.match(r"#(\d+) (\[.*)", line)
        if m:
            titles[m.group(1)] = m.group(2)
            continue
        m = re.match(r"#(\d+) (CACHED|DONE)", line)
        if m and m.group(1) in titles and "] FROM " not in titles[m.group(1)]:
            result[titles[m.group(1)]] = m.group(2)
    return result
