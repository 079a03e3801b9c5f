"""The build progress views, fed the BuildEvents a build streams."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace
from typing import Any

from dockyard.cli.buildprogress import PlainView, TtyView, display


def ev(status: str, index: int = 2, **kw: Any) -> SimpleNamespace:
    fields = {"step": "[2/3] RUN make", "error": "", "log": b"", "seconds": 0.0, "total": 3}
    return SimpleNamespace(status=status, index=index, **{**fields, **kw})


def test_plain_lines_as_buildkit_prints_them() -> None:
    out = io.StringIO()
    view = PlainView(out)
    for e in (
        ev("started"),
        ev("log", log=b"comp"),
        ev("log", log=b"iling\nlinking\n"),
        ev("done", seconds=1.25),
    ):
        view.event(e)
    view.event(ev("cached", index=3, step="[3/3] COPY . /src"))
    assert out.getvalue() == "#2 [2/3] RUN make\n#2 compiling\n#2 linking\n#2 DONE 1.2s\n#3 CACHED\n"


def test_tty_shows_running_steps_with_their_output_then_keeps_the_finished() -> None:
    out = io.StringIO()
    view = TtyView(out)
    view.event(ev("started"))
    view.event(ev("log", log=b"".join(b"line %d\n" % i for i in range(10))))
    frame = out.getvalue()
    assert " => [2/3] RUN make  " in frame
    assert "    line 9\n" in frame and "    line 3\n" not in frame  # only the last lines of output
    view.event(ev("done", seconds=2.0))
    view.event(ev("error", index=3, step="[3/3] RUN false", error="exit code: 1"))
    view.close()
    text = re.sub(r"\x1b\[\d*[FJ]", "", out.getvalue())
    assert " => [2/3] RUN make  2.0s\n" in text and " => ERROR [3/3] RUN false: exit code: 1\n" in text
    assert text.rstrip().endswith("(2/3) FINISHED")
    view.close()  # twice is harmless
    assert re.sub(r"\x1b\[\d*[FJ]", "", out.getvalue()) == text


def test_auto_is_plain_unless_a_terminal() -> None:
    assert isinstance(display("auto", io.StringIO()), PlainView)
    view = display("tty", io.StringIO())
    assert isinstance(view, TtyView)
    view.close()
