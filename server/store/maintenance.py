"""SQL for the periodic repairs of the outbox: undelivered specs, unconfirmed deletes, log retention."""

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


async def prune(conn: Conn, *, older_than: float) -> dict[str, Any]:
    """Drop reconciled spec events and status events older than the retention."""
    spec = await conn.execute(
        "DELETE FROM events WHERE reconciled_date IS NOT NULL AND created_at < now() - make_interval(secs => $1)",
        older_than,
    )
    status = await conn.execute(
        "DELETE FROM status_events WHERE created_at < now() - make_interval(secs => $1)", older_than
    )
    return {"events": int(spec.split()[-1]), "status_events": int(status.split()[-1])}
