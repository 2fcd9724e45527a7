"""A resource's history from the event logs: every spec version with who wrote it and when, the statuses reported
for it, and one version's spec — also for a deleted resource, as long as retention keeps its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import databases

from server.errors import NotFound
from server.store import history
from server.store.db import Conn, connection
from server.store.rows import ResourceRow, ResourceType

DEFAULT_SIZE: Final = 20
MAX_SIZE: Final = 100


@dataclass(frozen=True)
class Status:
    type: str  # StatusUpdate | StatusDelete
    status: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class Entry:
    """One spec event: ``Create``/``Update``/``Snapshot`` begin a version (and carry the statuses reported for it),
    ``Delete`` asks for its removal, ``Deleted`` records that the removal completed."""

    cursor: int
    event: str
    actor: str
    created_at: datetime
    resource: ResourceRow
    """The resource as of this event (without status)."""
    statuses: list[Status]


@dataclass(frozen=True)
class Page:
    items: list[Entry]
    next: int | None
    """The cursor to pass as ``after`` for the next page; None on the last page."""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _resource(resource_id: str, consumer_name: str, version: int, fact: dict[str, Any]) -> ResourceRow:
    return ResourceRow(
        id=resource_id,
        name=fact["name"],
        source=fact["source"],
        consumer_name=consumer_name,
        type=fact["type"],
        version=version,
        payload=fact["spec"],
        status=None,
        created_at=_time(fact["created_at"]),
        updated_at=_time(fact["updated_at"]),
        deleted_at=_time(fact["deleted_at"]) if fact.get("deleted_at") else None,
    )


def _not_found(resource_id: str) -> NotFound:
    return NotFound(f"Resource with id='{resource_id}' has no history: unknown, or its events are past retention")


async def _span(conn: Conn, resource_id: str, expect_type: ResourceType | None) -> history.Span:
    span = await history.span(conn, resource_id) if "\x00" not in resource_id else None
    if span is None or (expect_type and span.type != expect_type):
        raise _not_found(resource_id)
    return span


async def entries(
    db: databases.Database,
    resource_id: str,
    *,
    after: int = 0,
    size: int = DEFAULT_SIZE,
    expect_type: ResourceType | None = None,
) -> Page:
    """Up to ``size`` entries after the cursor ``after`` (0: from the beginning), oldest first."""
    async with connection(db) as conn:
        await _span(conn, resource_id, expect_type)
        rows = await history.page(conn, resource_id, after=after, limit=size + 1)
    items = [
        Entry(
            cursor=r["id"],
            event=r["event_type"],
            actor=r["fact"].get("actor") or "unknown",
            created_at=r["created_at"],
            resource=_resource(resource_id, r["consumer_name"], r["version"], r["fact"]),
            statuses=[Status(s["type"], s["status"], _time(s["created_at"])) for s in r["statuses"]],
        )
        for r in rows[:size]
    ]
    return Page(items, items[-1].cursor if len(rows) > size else None)


async def at_version(
    db: databases.Database, resource_id: str, version: int, *, expect_type: ResourceType | None = None
) -> ResourceRow:
    """The resource as it was at ``version`` (without status); NotFound says whether that version is unknown or
    no longer in the log."""
    async with connection(db) as conn:
        span = await _span(conn, resource_id, expect_type)
        found = await history.version(conn, resource_id, version)
    if found is not None:
        return _resource(resource_id, found["consumer_name"], found["version"], found["fact"])
    if version > span.latest_version:
        raise NotFound(
            f"version {version} of resource {resource_id} does not exist: the latest is {span.latest_version}"
        )
    raise NotFound(
        f"version {version} of resource {resource_id} is no longer in the event log (compacted by retention, or"
        f" written before the log held specs): it keeps versions {span.first_version} to {span.latest_version}"
    )
