"""``--format`` as docker reads it: a Go template per row, ``table …`` with a header row, ``json``.

docker's rules (cli/command/formatter): the literal two-character ``\\t`` and ``\\n`` become tab and
newline, the format is trimmed of spaces, each row is the template's output plus a newline.
``table TEMPLATE`` renders the header row with the same template over the command's header names
(``.ID`` → ``CONTAINER ID``) and aligns the columns as Go's tabwriter does. ``json`` is
``{{json .}}``. The keywords a command had before templates (``table``, ``json``, ``text``) are the
caller's to handle; :func:`is_template` says whether a value is something else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dockyard.core.gotemplate import Struct, parse, tabwrite

# docker's header functions: a header cell is the name itself, whatever function it goes through
_HEADER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": lambda v: v,
    "lower": lambda v: v,
    "upper": lambda v: v,
    "title": lambda v: v,
    "split": lambda v, _sep: v,
    "join": lambda v, _sep: v,
    "truncate": lambda v, _n: v,
    "pad": lambda v, _a, _b: v,
}


def is_template(value: str) -> bool:
    """Whether ``--format value`` is a template (or ``table …``), not a plain keyword."""
    return value.strip() not in ("", "table", "json", "text")


def prepare(value: str) -> tuple[bool, str]:
    """(is a table, the template) from a ``--format`` value, as docker's preFormat does it."""
    text = value
    table = text.startswith("table")
    if table:
        text = text[len("table") :]
    elif text.strip() == "json":
        text = "{{json .}}"
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, text


def check(value: str) -> None:
    """Parse a ``--format`` template now, so a bad one is refused before anything is asked."""
    if is_template(value):
        parse(prepare(value)[1], functions=_HEADER_FUNCTIONS)


def render(value: str, rows: Iterable[Any], headers: Mapping[str, str] | None = None) -> str:
    """Every row through the template, each followed by a newline; with ``table`` a header first and
    the whole aligned. ``headers`` maps a field to its column title (others: upper-cased)."""
    table, text = prepare(value)
    template = parse(text)
    body = "".join(template.execute(row) + "\n" for row in rows)
    if not table:
        return body
    header = parse(text, functions=_HEADER_FUNCTIONS).execute(_HeaderContext(dict(headers or {})))
    return tabwrite(header + "\n" + body)


def render_one(value: str, data: Any, missing_key_error: bool = False) -> str:
    """One object through a template (``inspect -f``, ``info``, ``version``): no table, a newline."""
    _, text = prepare(value)
    return parse(text, missing_key_error=missing_key_error).execute(data) + "\n"


class _HeaderContext(Struct):
    """The object a ``table`` template's header row is rendered from: every field is its title,
    and a method such as ``.Label "k"`` answers its own title."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("header", headers)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __getitem__(self, key: str) -> Any:
        title = self.get(key) or key.upper()
        return (lambda *_args: title) if key == "Label" else title


def struct(type_name: str, fields: Mapping[str, Any]) -> Struct:
    """A command's row as the Go struct docker formats: a missing field is an error."""
    return Struct(type_name, fields)
