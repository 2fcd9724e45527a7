"""SQL for one resource's history: its spec facts in log order, each with the statuses reported for it.

Every spec event that carries a payload (:func:`server.store.logs.fact`) is an entry. ``Create``, ``Update`` and
``Snapshot`` begin a version; the statuses reported for that version are the status events of this resource at
that version written from the entry's time until the next version began. (A status is accepted only while the row
is at its version, under the row lock, so no status of this version is written after the next version's event.)
``Delete`` and ``Deleted`` are entries of the version they end, without statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from server.store.db import Conn

BEGINS: Final = ("Create", "Update", "Snapshot")
"""Spec events that begin a version."""

_BEGINS_SQL: Final = "('Create', 'Update', 'Snapshot')"


@dataclass(frozen=True)
class Span:
    """What the log holds of one resource."""

    type: str
    """The resource type of its latest fact (Single or Bundle)."""
    first_version: int
    latest_version: int


async def span(conn: Conn, resource_id: str) -> Span | None:
    """None when the log holds no fact of this resource (never existed, compacted away, or written before the
    payload migration and gone since)."""
    r = await conn.fetchrow(
        "SELECT (array_agg(payload->>'type' ORDER BY id DESC))[1] AS type, min(version) AS first, max(version) AS last"
        " FROM events WHERE source_id = $1 AND payload IS NOT NULL",
        resource_id,
    )
    if r is None or r["type"] is None:
        return None
    return Span(type=r["type"], first_version=r["first"], latest_version=r["last"])


async def page(conn: Conn, resource_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` entries after event id ``after``, oldest first: ``id``, ``event_type``, ``version``,
    ``consumer_name``, ``fact`` (the payload), ``created_at`` and ``statuses`` (``type``, ``status``,
    ``created_at``)."""
    rows = await conn.fetch(
        "SELECT e.id, e.event_type, e.version, e.consumer_name, e.payload AS fact, e.created_at,"
        f" CASE WHEN e.event_type IN {_BEGINS_SQL} THEN (SELECT coalesce(jsonb_agg(jsonb_build_object("
        "  'type', s.status_event_type, 'status', s.status, 'created_at', s.created_at) ORDER BY s.id), '[]')"
        "  FROM status_events s WHERE s.resource_id = e.source_id AND s.version = e.version"
        "  AND s.created_at >= e.created_at AND (n.created_at IS NULL OR s.created_at < n.created_at))"
        " ELSE '[]' END AS statuses"
        " FROM events e LEFT JOIN LATERAL (SELECT x.created_at FROM events x WHERE x.source_id = e.source_id"
        f"  AND x.id > e.id AND x.payload IS NOT NULL AND x.event_type IN {_BEGINS_SQL} ORDER BY x.id LIMIT 1) n"
        "  ON true"
        " WHERE e.source_id = $1 AND e.id > $2 AND e.payload IS NOT NULL ORDER BY e.id LIMIT $3",
        resource_id,
        after,
        limit,
    )
    return [dict(r) for r in rows]


async def version(conn: Conn, resource_id: str, version: int) -> dict[str, Any] | None:
    """The fact that began ``version`` (of the resource's latest life, if its id was reused): ``consumer_name``,
    ``version``, ``fact``."""
    r = await conn.fetchrow(
        "SELECT consumer_name, version, payload AS fact FROM events WHERE source_id = $1 AND version = $2"
        f" AND payload IS NOT NULL AND event_type IN {_BEGINS_SQL} ORDER BY id DESC LIMIT 1",
        resource_id,
        version,
    )
    return dict(r) if r else None
