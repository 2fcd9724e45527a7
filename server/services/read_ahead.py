"""Read-ahead for cursor walks: the page after the one just answered, read while the client takes that one in.

A client walking a list by cursor asks for page k+1 only once it has received and decoded page k, and meanwhile
PostgreSQL idles; then it renders page k+1 while the client waits (most of a page's time). So when a cursor page
has a ``next``, the page it leads to is read at once in the background and kept for :data:`TTL` seconds; the
request for that page (same list, token, size, search, order and fields) takes it instead of reading again.

A page read ahead shows the table as it was up to :data:`TTL` seconds before the request, as if the client had
asked that much sooner (a row created or deleted in between may be missing or still there); the walk's promise —
every row that exists throughout the walk is read exactly once — holds. Bounded: pages of at most
:data:`MAX_SIZE` items, at most :data:`MAX_PAGES` kept per database, each dropped :data:`TTL` seconds after its read
began if unclaimed. A read-ahead that fails is forgotten: the request reads for itself (and fails, or falls back,
as it would have). One more page is read per walk a client abandons.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Final

import databases

from server.store import listing

TTL: Final = 1.0
MAX_SIZE: Final = 1000
MAX_PAGES: Final = 8

Read = Callable[[listing.ListQuery], Coroutine[Any, Any, listing.Page[str]]]


class ReadAhead:
    """The pages read ahead for one database, by (list, query)."""

    def __init__(self) -> None:
        self._pages: dict[tuple[Hashable, listing.ListQuery], tuple[float, asyncio.Task[listing.Page[str]]]] = {}

    async def page(self, list_key: Hashable, query: listing.ListQuery, read: Read) -> listing.Page[str]:
        """The page ``read(query)`` answers, taken from a read-ahead when there is one; reads its successor ahead.

        ``list_key`` names what besides ``query`` decides the page (the collection, ``fields=``)."""
        found = await self._take((list_key, query))
        if found is None:
            found = await read(query)
        if found.next is not None and query.size <= MAX_SIZE:
            self._start((list_key, dataclasses.replace(query, after=found.next)), read)
        return found

    async def settled(self) -> None:
        """Wait for the reads ahead under way to end (however they end)."""
        await asyncio.gather(*(task for _, task in self._pages.values()), return_exceptions=True)

    async def _take(self, key: tuple[Hashable, listing.ListQuery]) -> listing.Page[str] | None:
        entry = self._pages.pop(key, None)
        if entry is None:
            return None
        started, task = entry
        if time.monotonic() - started > TTL:
            task.cancel()
            return None
        try:
            return await task
        except Exception:
            return None

    def _start(self, key: tuple[Hashable, listing.ListQuery], read: Read) -> None:
        while len(self._pages) >= MAX_PAGES:
            self._pages.pop(next(iter(self._pages)))[1].cancel()
        task = asyncio.create_task(read(key[1]))
        task.add_done_callback(_forget)
        self._pages[key] = (time.monotonic(), task)
        asyncio.get_running_loop().call_later(TTL, self._expire, key, task)

    def _expire(self, key: tuple[Hashable, listing.ListQuery], task: asyncio.Task[listing.Page[str]]) -> None:
        """Drop a page nobody claimed in time (its memory, and its task if still reading)."""
        if key in self._pages and self._pages[key][1] is task:
            del self._pages[key]
            task.cancel()


def _forget(task: asyncio.Task[listing.Page[str]]) -> None:
    """Retrieve a read-ahead's outcome so that one nobody claims logs no "exception was never retrieved"."""
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()


_BY_DATABASE: weakref.WeakKeyDictionary[databases.Database, ReadAhead] = weakref.WeakKeyDictionary()


def of(db: databases.Database) -> ReadAhead:
    """The read-ahead of ``db`` (pages of one database are never served for another)."""
    ahead = _BY_DATABASE.get(db)
    if ahead is None:
        ahead = _BY_DATABASE[db] = ReadAhead()
    return ahead
