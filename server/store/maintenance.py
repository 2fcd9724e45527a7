"""SQL for the periodic repairs of the outbox: undelivered specs, unconfirmed deletes, log retention and
compaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.store.db import Conn


@dataclass(frozen=True)
class Candidate:
    id: str
    consumer_name: str
    version: int


async def undelivered(conn: Conn, *, older_than: float, limit: int = 10_000) -> list[Candidate]:
    """Live resources whose agent has not reported the current version for ``older_than`` seconds, with no
    pending event and no event in that time (so each is re-published at most once per threshold).

    NB: the status condition is the predicate of ``resources_undelivered_idx`` word for word (the planner uses a
    partial index only when it can match it); change both together. ObservedVersion is compared as text: the
    hub writes it as a JSON integer, whose text is the version's.
    """
    rows = await conn.fetch(
        "SELECT r.id, r.consumer_name, r.version FROM resources r"
        " WHERE r.deleted_at IS NULL AND r.updated_at < now() - make_interval(secs => $1)"
        " AND (r.status IS NULL OR (r.status ->> 'ObservedVersion') IS DISTINCT FROM r.version::text)"
        " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.source_id = r.id"
        "  AND (e.reconciled_date IS NULL OR e.created_at > now() - make_interval(secs => $1)))"
        " ORDER BY r.updated_at LIMIT $2",
        older_than,
        limit,
    )
    return [Candidate(r["id"], r["consumer_name"], r["version"]) for r in rows]


async def unconfirmed_deletes(conn: Conn, *, quiet_for: float, limit: int = 10_000) -> list[Candidate]:
    """Resources being deleted whose last spec event is older than ``quiet_for`` seconds and none pending."""
    rows = await conn.fetch(
        "SELECT r.id, r.consumer_name, r.version FROM resources r WHERE r.deleted_at IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.source_id = r.id"
        "  AND (e.reconciled_date IS NULL OR e.created_at > now() - make_interval(secs => $1)))"
        " ORDER BY r.deleted_at LIMIT $2",
        quiet_for,
        limit,
    )
    return [Candidate(r["id"], r["consumer_name"], r["version"]) for r in rows]


async def stale_deletes(conn: Conn, *, older_than: float, limit: int = 10_000) -> list[Candidate]:
    rows = await conn.fetch(
        "SELECT id, consumer_name, version FROM resources WHERE deleted_at < now() - make_interval(secs => $1)"
        " ORDER BY deleted_at LIMIT $2",
        older_than,
        limit,
    )
    return [Candidate(r["id"], r["consumer_name"], r["version"]) for r in rows]


async def append_events(conn: Conn, events: list[tuple[str, str, str, int]]) -> None:
    """Append spec events ``(resource id, consumer, event type, version)`` and wake the dispatchers."""
    if not events:
        return
    await conn.executemany(
        "INSERT INTO events (source_id, consumer_name, event_type, version) VALUES ($1, $2, $3, $4)", events
    )
    for consumer in sorted({e[1] for e in events}):
        await conn.execute("SELECT pg_notify('events', $1)", consumer)


async def reconcile_events_of(conn: Conn, resource_id: str) -> None:
    await conn.execute(
        "UPDATE events SET reconciled_date = now() WHERE source_id = $1 AND reconciled_date IS NULL", resource_id
    )


_LATEST_FACT = (
    "SELECT DISTINCT ON (source_id) source_id, id FROM events WHERE payload IS NOT NULL ORDER BY source_id, id DESC"
)


async def prune(conn: Conn, *, older_than: float, versions_kept: int = 0) -> dict[str, Any]:
    """Compact the event logs; returns how many rows each lost.

    Spec log: a reconciled event goes when it is older than ``older_than`` seconds, or (``versions_kept`` > 0)
    when its version is not among its resource's newest ``versions_kept``. Never pending events (the dispatcher
    has not published them yet) nor the latest fact of a resource that still has a row (the latest version of a
    live resource, the delete request of a deleting one: what ``maestro admin rebuild`` reads). The events of a
    resource whose delete completed go together, once the newest is older than ``older_than`` (so the log never
    keeps an older fact of it without its ``Deleted``).

    Status log: only by age (watchers resume from a cursor anywhere within the retention window), and never the
    latest status event of a resource that still has a row.
    """
    spec = await conn.execute(
        f"WITH latest AS ({_LATEST_FACT}),"
        " newest AS (SELECT source_id, max(version) AS version FROM events GROUP BY source_id)"
        " DELETE FROM events e USING newest n WHERE n.source_id = e.source_id AND e.reconciled_date IS NOT NULL"
        " AND (e.created_at < now() - make_interval(secs => $1) OR ($2 > 0 AND e.version <= n.version - $2))"
        " AND NOT EXISTS (SELECT 1 FROM latest l WHERE l.id = e.id)"
        " AND (EXISTS (SELECT 1 FROM resources r WHERE r.id = e.source_id)"
        "  OR ($2 > 0 AND e.version <= n.version - $2))",
        older_than,
        versions_kept,
    )
    gone = await conn.execute(
        "DELETE FROM events e WHERE e.reconciled_date IS NOT NULL AND e.source_id IN (SELECT source_id FROM events"
        "  GROUP BY source_id HAVING max(created_at) < now() - make_interval(secs => $1))"
        " AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = e.source_id)",
        older_than,
    )
    status = await conn.execute(
        "DELETE FROM status_events s WHERE s.created_at < now() - make_interval(secs => $1)"
        " AND NOT (EXISTS (SELECT 1 FROM resources r WHERE r.id = s.resource_id)"
        "  AND s.id = (SELECT max(x.id) FROM status_events x WHERE x.resource_id = s.resource_id))",
        older_than,
    )
    return {
        "events": int(spec.split()[-1]) + int(gone.split()[-1]),
        "status_events": int(status.split()[-1]),
    }
