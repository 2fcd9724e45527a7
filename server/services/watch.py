"""Status watch: stream the status event log to sources, resuming from a cursor without a relist.

One :class:`StatusFeed` per process. Whatever LISTENs on ``status_events`` calls :meth:`StatusFeed.notify` (or sets
``feed.wake``); each watcher then re-reads the log after its own cursor with the commit-safe reader of
:mod:`server.store.logs`, so a watcher never misses a status and never needs the NOTIFY payload. A poll interval
bounds the latency when a notification is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import databases

from server.errors import DatabaseUnavailable
from server.store import logs, resources
from server.store.db import connection
from server.store.rows import ResourceRow


@dataclass(frozen=True)
class StatusEvent:
    """One entry of the status log, with the resource's current spec when it still exists."""

    cursor: logs.Cursor
    resource_id: str
    source: str
    consumer_name: str
    type: str  # StatusUpdate | StatusDelete
    version: int
    status: dict[str, Any] | None
    spec: dict[str, Any] | None
    created_at: datetime
    resource_created_at: datetime | None = None  # the resource's, while it exists (the work's creationTimestamp)


class StatusFeed:
    """Wakes every watcher of this process when the status log may have grown."""

    def __init__(self, *, poll_interval: float = 5.0) -> None:
        self.poll_interval = poll_interval
        self._changed = asyncio.Condition()
        self.wake = asyncio.Event()
        self.generation = 0

    def notify(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        """Forward ``wake`` to all waiting watchers; run as a background task."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            async with self._changed:
                self.generation += 1
                self._changed.notify_all()

    async def wait(self, since: int) -> None:
        """Return once a notification newer than generation ``since`` arrived, or after the poll interval."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval), self._changed:
                await self._changed.wait_for(lambda: self.generation != since)


async def _spec(db: databases.Database, ids: list[str]) -> dict[str, ResourceRow]:
    async with connection(db) as conn:
        return {r.id: r for r in await resources.get_many(conn, ids)}


async def read(
    db: databases.Database,
    after: logs.Cursor,
    *,
    source: str | None = None,
    consumer: str | None = None,
    limit: int = 500,
) -> tuple[list[StatusEvent], logs.Cursor]:
    """One page of status events after ``after`` for a source and/or consumer."""
    async with connection(db) as conn:
        rows, cursor = await logs.read(
            conn,
            "status_events",
            after,
            limit=limit,
            where="($4::text IS NULL OR resource_source = $4) AND ($5::text IS NULL OR consumer_name = $5)",
            params=(source, consumer),
        )
    live = await _spec(db, [r["resource_id"] for r in rows if r["status_event_type"] == "StatusUpdate"])
    out = []
    for r in rows:
        row = live.get(r["resource_id"])
        spec = r["payload"] if r["status_event_type"] == "StatusDelete" else row.payload if row else None
        out.append(
            StatusEvent(
                cursor=logs.Cursor(r["xid_int"], r["id"]),
                resource_id=r["resource_id"],
                source=r["resource_source"],
                consumer_name=r["consumer_name"],
                type=r["status_event_type"],
                version=r["version"],
                status=r["status"],
                spec=spec,
                created_at=r["created_at"],
                resource_created_at=row.created_at if row else None,
            )
        )
    return out, cursor


async def head(db: databases.Database) -> logs.Cursor:
    async with connection(db) as conn:
        return await logs.head(conn)


async def follow(
    db: databases.Database,
    feed: StatusFeed,
    after: logs.Cursor,
    *,
    source: str | None = None,
    consumer: str | None = None,
) -> AsyncIterator[StatusEvent]:
    """Every status event after ``after``, forever: the log's backlog first, then new ones as they commit. A
    database outage is waited out (the cursor stays where it was, so nothing is missed)."""
    cursor = after
    while True:
        generation = feed.generation  # NB: taken before reading, so a commit during the read is not slept through.
        try:
            batch, cursor = await read(db, cursor, source=source, consumer=consumer)
        except (DatabaseUnavailable, TimeoutError):
            # NB: a timeout too (a connect or a pool wait while PostgreSQL restarts under load is one): a watch
            # outlives outages, from the same cursor.
            await feed.wait(generation)
            continue
        for event in batch:
            yield event
        if not batch:
            await feed.wait(generation)
