"""List RPCs answer in pages (dockyard.core.paging), so no answer grows with what a node holds:
before, enough containers made `ps -a` fail for everyone with "Sent message larger than max"."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.api.containers.v1 import containers_pb2 as cpb
from dockyard.api.images.v1 import images_pb2 as ipb
from dockyard.cli.client import list_all
from dockyard.core.errors import InvalidArgument
from dockyard.core.paging import DEFAULT_PAGE, MAX_PAGE, PAGE_BYTES, page

GRPC_MAX = 4 << 20


def _containers(n: int, label_bytes: int = 0) -> list[cpb.Container]:
    return [
        cpb.Container(
            id=f"{i:064x}",
            name=f"c{i}",
            spec=cpb.ContainerSpec(labels={"l": "x" * label_bytes} if label_bytes else {}),
        )
        for i in range(n)
    ]


def _all_pages(items: list[cpb.Container], **kw: Any) -> list[list[cpb.Container]]:
    pages, token = [], ""
    while True:
        got, token = page(items, lambda c: c.id, lambda c: c, lambda m: m.ByteSize(), token=token, **kw)
        pages.append(got)
        if not token:
            return pages


def test_many_containers_come_in_pages_each_under_the_message_limit() -> None:
    items = _containers(3000, label_bytes=2000)  # ~6 MB in one answer: past gRPC's 4 MiB
    assert sum(c.ByteSize() for c in items) > GRPC_MAX
    pages = _all_pages(list(reversed(items)))
    assert all(sum(c.ByteSize() for c in p) <= PAGE_BYTES for p in pages)
    assert [c.id for p in pages for c in p] == sorted(c.id for c in items)  # each once, in id order


def test_page_size_default_cap_and_bad_value() -> None:
    items = _containers(2500)
    assert [len(p) for p in _all_pages(items)] == [DEFAULT_PAGE] * 5
    assert len(_all_pages(items, page_size=5000)[0]) == MAX_PAGE
    assert len(_all_pages(items, page_size=7)[0]) == 7
    with pytest.raises(InvalidArgument, match="page_size"):
        _all_pages(items, page_size=-1)


def test_an_item_bigger_than_a_page_still_comes_alone() -> None:
    items = _containers(3, label_bytes=PAGE_BYTES + 10)
    assert [len(p) for p in _all_pages(items)] == [1, 1, 1]


def test_a_token_survives_the_removal_of_its_item() -> None:
    items = _containers(10)
    first, token = page(items, lambda c: c.id, lambda c: c, lambda m: m.ByteSize(), page_size=4)
    remaining = [c for c in items if c.id != token]  # the last one sent is removed meanwhile
    rest, _ = page(remaining, lambda c: c.id, lambda c: c, lambda m: m.ByteSize(), token=token)
    assert [c.id for c in first + rest] == [c.id for c in items]


def test_the_cli_asks_page_after_page() -> None:
    items = _containers(1200)
    asked: list[str] = []

    def list_method(request: cpb.ListContainersRequest, **_: Any) -> cpb.ListContainersResponse:
        asked.append(request.page_token)
        got, token = page(
            items, lambda c: c.id, lambda c: c, lambda m: m.ByteSize(), token=request.page_token
        )
        return cpb.ListContainersResponse(containers=got, next_page_token=token)

    got = list_all(list_method, cpb.ListContainersRequest(all=True), "containers")
    assert [c.id for c in got] == [c.id for c in items] and len(asked) == 3 and asked[0] == ""
    assert ipb.ListImagesResponse(next_page_token="x").next_page_token == "x"
