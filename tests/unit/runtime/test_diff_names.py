"""``docker diff`` of a name that is not UTF-8 (issue 15, item 6 a).

Linux names are bytes; Python hands a name that is not UTF-8 over with lone surrogates, which a
protobuf ``string`` refuses, so Diff failed for the whole container. On the wire the path is now
UTF-8 text with each stray byte as ``\\xNN`` and, beside it, the exact bytes (``path_bytes``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.runtime.layerdiff import Change, changes
from dockyard.runtime.servicer import ContainersServicer

LATIN1_NAME = b"caf\xe9"  # "café" written by a Latin-1 program: not valid UTF-8


def _upper(tmp_path: Path) -> tuple[Path, Path]:
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    (upper / "data").mkdir(parents=True)
    lower.mkdir()
    (lower / "data").mkdir()
    with open(os.path.join(os.fsencode(upper / "data"), LATIN1_NAME), "wb") as fh:
        fh.write(b"x")
    (upper / "data" / "café").write_text("utf-8 is fine")
    return upper, lower


def test_a_name_that_is_not_utf8_is_listed_with_its_exact_bytes_and_escaped_text(tmp_path: Path) -> None:
    upper, lower = _upper(tmp_path)
    found = {c.raw: c for c in changes(upper, [lower])}
    odd = found[b"/data/" + LATIN1_NAME]
    assert odd.kind == "A" and odd.text == "/data/caf\\xe9"
    assert found["/data/café".encode()].text == "/data/café"


def test_the_diff_answer_carries_both_forms_and_only_when_needed(tmp_path: Path) -> None:
    upper, lower = _upper(tmp_path)
    listed = changes(upper, [lower])

    async def diff(ref: str) -> list[Change]:
        return listed

    servicer = ContainersServicer(SimpleNamespace(diff=diff), "node")  # type: ignore[arg-type]
    answer: Any = asyncio.run(servicer.Diff(cpb.DiffRequest(id="c"), None))
    wire = cpb.DiffResponse.FromString(answer.SerializeToString())
    by_path = {c.path: c for c in wire.changes}
    assert by_path["/data/caf\\xe9"].path_bytes == b"/data/" + LATIN1_NAME
    assert by_path["/data/café"].path_bytes == b""  # valid UTF-8: the text is the name
    assert by_path["/data"].kind == "C" and by_path["/data"].path_bytes == b""
