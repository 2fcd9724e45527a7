"""A cursor walk's next page is read ahead once and taken by the request for it — only by that request, only while
fresh; a failed read-ahead leaves the request to read for itself."""

from __future__ import annotations

import asyncio

import pytest

from server.services import read_ahead
from server.store import listing


class Pages:
    """A list of ``pages`` pages: page n's ``next`` is ``"n+1"``; counts the reads of each token."""

    def __init__(self, pages: int, *, fail: set[str] | None = None) -> None:
        self.pages, self.fail = pages, fail or set()
        self.reads: list[str] = []

    async def read(self, query: listing.ListQuery) -> listing.Page[str]:
        token = query.after or ""
        self.reads.append(token)
        await asyncio.sleep(0)
        if token in self.fail:
            raise RuntimeError(f"read of {token!r} failed")
        number = int(token or "1")
        following = str(number + 1) if number < self.pages else None
        return listing.Page([f'"item of page {number}"'], total=self.pages, page=number, next=following)


def query(after: str, size: int = 10) -> listing.ListQuery:
    return listing.ListQuery(size=size, after=after)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_each_page_of_a_walk_is_read_once_and_the_request_takes_it() -> None:
    ahead, pages = read_ahead.ReadAhead(), Pages(3)
    walked = []
    after = ""
    while True:
        page = await ahead.page("bundles", query(after), pages.read)
        walked.append(page.page)
        await settle()
        if page.next is None:
            break
        after = page.next
    assert walked == [1, 2, 3]
    assert pages.reads == ["", "2", "3"]  # pages 2 and 3 were read ahead, and not again for their requests


async def test_a_page_read_ahead_is_only_for_the_same_list_and_query() -> None:
    ahead, pages = read_ahead.ReadAhead(), Pages(3)
    await ahead.page("bundles", query(""), pages.read)
    await settle()
    await ahead.page("consumers", query("2"), pages.read)  # another list
    await ahead.page("bundles", query("2", size=11), pages.read)  # another size
    await settle()
    assert pages.reads.count("2") == 3  # read ahead for the bundles' walk, then by each of the two requests


async def test_stale_failed_and_large_pages_are_read_by_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    ahead, pages = read_ahead.ReadAhead(), Pages(4, fail={"2"})
    await ahead.page("bundles", query(""), pages.read)
    await settle()
    assert (await ahead.page("bundles", query("2"), lambda q: Pages(4).read(q))).page == 2  # read ahead failed
    monkeypatch.setattr(read_ahead, "TTL", -1.0)  # every page read ahead is stale
    await settle()
    await ahead.page("bundles", query("3"), pages.read)
    await settle()
    assert pages.reads == ["", "2", "3", "4"]  # "3" was read ahead (by another reader), but too long ago
    monkeypatch.setattr(read_ahead, "MAX_SIZE", 5)
    await ahead.page("bundles", query("", size=6), pages.read)
    await settle()
    assert pages.reads[-1] == ""  # a page over MAX_SIZE: nothing read ahead
