"""Status resync: ask agents for the statuses the hub may have missed, once per link and once per takeover.

Statuses published while the hub was away may be lost (a clean session, a broker restart without persistence),
and those a departed replica received may never have been stored. So the hub sends a consumer's agent a
``status.resync_request`` listing the stored status hash of each of its resources, and the agent answers with the
statuses whose hash differs. :class:`Resyncs` is the one sender; what asks for a resync only says whom:

* a broker link came up (:meth:`Resyncs.linked`): every consumer this replica owns, once its membership reflects
  the link (:meth:`server.dispatch.instances.Registry.fresh`): what it owns by (re)joining is covered here, not
  as a takeover;
* consumers were taken over from a replica that left (:meth:`Resyncs.taken_over`): those;
* with a shared subscription a replica left (:meth:`Resyncs.everyone`): every consumer owned, since the departed
  replica had its share of every consumer's status events.

Requests that arrive while a resync runs coalesce into the next one, and a resync that fails (the database or
the broker away) is retried with backoff, so each consumer is asked once per cause. The walk is streamed: a
page of consumers, their hashes, their events published, the next page; memory holds one page, never every
consumer's hashes. Batches keep each event under the broker's packet limit. A resource without a status gets the
empty-status hash, so an agent that has reported nothing yet is not asked to re-send nothing, and a consumer
without resources is not asked at all (an empty list would mean "send everything").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import databases

from protocol import events, resync, statushash, types
from server.dispatch import guard, metrics, wire
from server.settings import Settings
from server.store import status
from server.store.db import connection

log = logging.getLogger(__name__)

PAGE = 100
"""Consumers per page of the walk."""


async def status_resync(
    database: databases.Database,
    publisher: wire.Publisher,
    *,
    source_id: str,
    source_events: str,
    consumers: Iterable[str] | None = None,
    owns: Callable[[str], bool] | None = None,
    publish_timeout: float = 30.0,
    max_bytes: int = resync.DEFAULT_MAX_BYTES,
    page: int = PAGE,
) -> int:
    """Send ``status.resync_request`` to ``consumers`` (default: every consumer with resources) that this replica
    ``owns`` (all without it); returns how many events were sent."""
    sent = asked = 0
    async for name, pairs in _walk(database, consumers, owns, page):
        topic = wire.source_events_topic(source_events, source=source_id, consumer=name)
        for data in resync.status_resync_payloads(pairs, max_bytes=max_bytes):
            event = events.make_event(
                type=types.manifestbundle_type("status", types.RESYNC_REQUEST),
                source=source_id,
                data=dict(data),
                extensions={types.EXT_CLUSTER_NAME: name},
            )
            await publisher.publish(topic, wire.encode(event, publisher), timeout=publish_timeout)
            sent += 1
            metrics.RESYNC_SENT.labels("status").inc()
        asked += 1
    log.info("status resync requested from %d consumers (%d events)", asked, sent)
    return sent


async def _walk(
    database: databases.Database, consumers: Iterable[str] | None, owns: Callable[[str], bool] | None, page: int
) -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """``(consumer, [(resource id, status hash)])`` for each consumer with resources, a page at a time; the next
    page is read while the caller publishes this one."""
    pages = _pages(database, page) if consumers is None else _chunks(sorted(set(consumers)), page)
    # NB: each read is a unit of work in its own task, awaited to its end (never cancelled halfway) also when the
    # walk stops early: a cancellation, a failed publish (see server.dispatch.guard). At most two: the page being
    # published and the next.
    reads: list[asyncio.Future[list[tuple[str, str, str | None]]]] = []
    try:
        async for names in pages:
            mine = [n for n in names if owns is None or owns(n)]
            if mine:
                reads.append(asyncio.ensure_future(_hashes(database, mine)))
            if len(reads) == 2:
                for item in _grouped(await asyncio.shield(reads[0])):
                    yield item
                del reads[0]
        while reads:
            for item in _grouped(await asyncio.shield(reads[0])):
                yield item
            del reads[0]
    finally:
        if reads:
            await asyncio.wait(reads)
        for read in reads:
            if not read.cancelled():
                read.exception()  # NB: retrieved: whatever ended the walk wins.


def _grouped(rows: list[tuple[str, str, str | None]]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    for name, group in itertools.groupby(rows, key=lambda r: r[0]):
        yield name, [(rid, h or statushash.EMPTY_HASH) for _, rid, h in group]


async def _pages(database: databases.Database, page: int) -> AsyncIterator[list[str]]:
    after = ""
    while names := await guard.finish(_names(database, after, page)):
        yield names
        after = names[-1]


async def _chunks(names: list[str], page: int) -> AsyncIterator[list[str]]:
    for start in range(0, len(names), page):
        yield names[start : start + page]


async def _names(database: databases.Database, after: str, page: int) -> list[str]:
    async with connection(database) as conn:
        return await status.consumer_names(conn, after=after, limit=page)


async def _hashes(database: databases.Database, names: list[str]) -> list[tuple[str, str, str | None]]:
    async with connection(database) as conn:
        return await status.hashes(conn, names)


class Resyncs:
    """The one sender of status resync requests; see the module docstring. :meth:`run` until cancelled."""

    def __init__(
        self,
        database: databases.Database,
        publisher: wire.Publisher,
        settings: Settings,
        *,
        source_events: str,
        owns: Callable[[str], bool] | None = None,
        fresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.source_id = settings.transport.source_id
        self.source_events = source_events
        self.owns = owns
        self.fresh = fresh
        """Awaited after a link came up, before asking: until it returns, ownership may predate the link."""
        self.max_bytes = max(1024, settings.transport.mqtt_max_packet_bytes - 8 * 1024)
        """Resync payloads stay this far under the packet limit, leaving room for the event's attributes."""
        self.backoff = settings.dispatch.resync_backoff
        self._link = False
        self._everyone = False
        self._some: set[str] = set()
        self._wake = asyncio.Event()

    def linked(self) -> None:
        self._link = True
        self._wake.set()

    def everyone(self) -> None:
        self._everyone = True
        self._wake.set()

    def taken_over(self, names: Iterable[str]) -> None:
        self._some.update(names)
        self._wake.set()

    async def follow(self, connections: AsyncIterable[Any]) -> None:
        """Ask for a resync on every item of ``connections`` (``Broker.connections()``)."""
        async for _ in connections:
            self.linked()

    async def serve(self, connections: AsyncIterable[Any]) -> None:
        """:meth:`follow` and :meth:`run` together, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.follow(connections), name="resync:links")
            group.create_task(self.run(), name="resync:send")

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            link, everyone, some = self._link, self._everyone, self._some
            self._link, self._everyone, self._some = False, False, set()
            try:
                if link and self.fresh is not None:
                    await self.fresh()
                # NB: taken only now, so that what the fresh membership gained joins this round.
                everyone = everyone or link or self._everyone
                some |= self._some
                self._everyone, self._some = False, set()
                await status_resync(
                    self.database,
                    self.publisher,
                    source_id=self.source_id,
                    source_events=self.source_events,
                    consumers=None if everyone else some,
                    owns=self.owns,
                    max_bytes=self.max_bytes,
                )
                failures = 0
            except Exception as exc:
                failures += 1
                delay = self.backoff.delay(failures)
                log.warning("status resync failed (%r); retrying in %.1fs", exc, delay)
                self._link |= link
                self._everyone |= everyone
                self._some |= some
                await asyncio.sleep(delay)
                self._wake.set()


async def on_connections(
    connections: AsyncIterable[Any],
    *,
    database: databases.Database,
    publisher: wire.Publisher,
    settings: Settings,
    source_events: str,
) -> None:
    """A resync of every consumer on every item of ``connections``, for a hub of one replica (no registry)."""
    await Resyncs(database, publisher, settings, source_events=source_events).serve(connections)
