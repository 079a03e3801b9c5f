"""Pages of a listing, so no answer grows with what a node holds.

A page is at most ``page_size`` items (0: :data:`DEFAULT_PAGE`; at most :data:`MAX_PAGE`) and at
most :data:`PAGE_BYTES` of encoded messages, but always at least one item (a single item is
bounded by what create accepts, see :mod:`dockyard.core.bounds`). Items go in key order (an id:
unique and stable), and the token is the last key sent, so a page is the same whichever items
were added or removed before it; the next page starts after it. Cost: a sort of the keys and
the conversion of one page's items. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from dockyard.core.errors import InvalidArgument

DEFAULT_PAGE = 500
MAX_PAGE = 1000
PAGE_BYTES = 1 << 20

T = TypeVar("T")
M = TypeVar("M")


def page(
    items: Iterable[T],
    key: Callable[[T], str],
    convert: Callable[[T], M],
    size: Callable[[M], int],
    *,
    page_size: int = 0,
    token: str = "",
    page_bytes: int = PAGE_BYTES,
) -> tuple[list[M], str]:
    """The page after ``token`` of ``items`` (converted), and the token of the next ("" at the end)."""
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative: {page_size}")
    limit = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    rest = sorted((i for i in items if key(i) > token), key=key)
    out: list[M] = []
    used = 0
    for index, item in enumerate(rest):
        message = convert(item)
        used += size(message)
        if out and (len(out) >= limit or used > page_bytes):
            return out, key(rest[index - 1])
        out.append(message)
    return out, ""
