"""The spec-event outbox as the dispatcher reads it: pending work grouped per resource, and marking it done.

An ``events`` row is pending while ``reconciled_date`` is NULL. The dispatcher publishes the *current* state of
each dirty resource, so several pending events of one resource become one message. It marks exactly the rows it
read as reconciled (by id, never "everything up to id N"): an event committed after the read, even one holding a
lower id, stays pending and is published on the next sweep. The marking of what was published rides on the next
sweep's statement (``reconcile``): one round trip for both.

The sweep's read also returns the rows of the first few dirty resources, read in the same statement and so in the same
snapshot as their events: a row read with its events reflects at least those events, so the dispatcher may publish it
without reading it again (one round trip per dispatch round fewer).

The pending events are read through ``pending_events(skip)`` (migration 13), which holds the planner to plain range
scans of ``events_pending_idx`` (its entries for events marked since the last VACUUM are then stepped over, where a
bitmap scan would visit each of their rows on every sweep) and steps over the index ranges of the consumers in
``skip`` (those the dispatcher holds a backlog of); the rows are read by id, one at a time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from server.store.db import Conn
from server.store.rows import ResourceRow


@dataclass(frozen=True)
class Dirty:
    """One resource with pending spec events."""

    resource_id: str
    consumer_name: str
    event_ids: tuple[int, ...]
    first_written: datetime
    """When the oldest pending event was written (for the write→published latency)."""
    read: bool = False
    """Whether ``row`` was read with the events (then None means the resource is gone)."""
    row: ResourceRow | None = None
    """The resource without its status (None): what is published is its spec."""


_SPEC_COLUMNS = (
    "id, name, source, consumer_name, type, version, payload, NULL::jsonb AS status, created_at, updated_at, deleted_at"
)


async def pending(
    conn: Conn,
    *,
    per_consumer: int = 500,
    rows: int = 0,
    reconcile: Collection[int] = (),
    backlogged: Collection[str] = (),
) -> list[Dirty]:
    """Dirty resources, at most ``per_consumer`` of each consumer, oldest first within a consumer; the first ``rows``
    of them (in that order) with their row, read in the same snapshot as their events. The consumers
    ``backlogged`` are left out (their oldest dirty resources are already queued; their events are read once
    the queue has drained): a consumer's backlog is not read again and again while it waits.

    The events ``reconcile`` are marked reconciled in the same statement, and are not read as pending (the
    statement's read does not see its own update).

    The per-consumer cap keeps one consumer's storm from filling the page: every consumer with pending work
    appears in every sweep.
    """
    records = await conn.fetch(
        "WITH done AS (UPDATE events SET reconciled_date = now() WHERE id = ANY($3::bigint[])"
        "  AND reconciled_date IS NULL RETURNING 1)"
        " SELECT d.source_id AS dirty_id, d.consumer_name AS dirty_consumer, d.ids, d.first_written,"
        " d.n <= $2 AS read, r.* FROM ("
        "  SELECT *, row_number() OVER (ORDER BY consumer_name, rank) AS n FROM ("
        "   SELECT source_id, consumer_name, array_agg(id ORDER BY id) AS ids, min(created_at) AS first_written,"
        "    row_number() OVER (PARTITION BY consumer_name ORDER BY min(id)) AS rank"
        "   FROM pending_events($4::text[]) WHERE id <> ALL($3::bigint[])"
        "   GROUP BY source_id, consumer_name) AS g"
        "  WHERE rank <= $1) AS d"
        f" LEFT JOIN LATERAL (SELECT {_SPEC_COLUMNS} FROM resources"
        "  WHERE id = d.source_id AND d.n <= $2 LIMIT 1) AS r ON true"
        " ORDER BY d.n",
        per_consumer,
        rows,
        list(reconcile),
        sorted(set(backlogged)),
    )
    return [
        Dirty(
            resource_id=r["dirty_id"],
            consumer_name=r["dirty_consumer"],
            event_ids=tuple(r["ids"]),
            first_written=r["first_written"],
            read=r["read"],
            row=ResourceRow.of(r) if r["id"] is not None else None,
        )
        for r in records
    ]


async def pending_count(conn: Conn, *, consumer_name: str | None = None) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE reconciled_date IS NULL AND ($1::text IS NULL OR consumer_name = $1)",
            consumer_name,
        )
    )
