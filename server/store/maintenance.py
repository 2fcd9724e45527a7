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


# NB: every statement below starts from an indexed candidate set (events_created_at_idx, status_events_created_at_idx,
# or one resource's events by events_source_id_idx) and checks protection per candidate with index lookups, so a
# round costs what it deletes, not the size of the logs (tests/integration/test_search_plans.py).
_NEWER_FACT = (
    "EXISTS (SELECT 1 FROM events x WHERE x.source_id = e.source_id AND x.id > e.id AND x.payload IS NOT NULL)"
)
_HAS_ROW = "EXISTS (SELECT 1 FROM resources r WHERE r.id = e.source_id)"


async def prune(
    conn: Conn, *, older_than: float, versions_kept: int = 0, written_within: float | None = None
) -> dict[str, Any]:
    """Compact the event logs; returns how many rows each lost.

    Spec log, by age: a reconciled event older than ``older_than`` seconds goes, except the latest fact of a
    resource that still has a row (its latest version; the delete request of a deleting one: what ``maestro admin
    rebuild`` reads). The events of a resource whose delete completed go together, once the newest is older than
    ``older_than`` (so the log never keeps an older fact of it without its ``Deleted``).

    Spec log, by versions (``versions_kept`` > 0): of each resource with a fact written in the last
    ``written_within`` seconds (None: within the retention), the reconciled events of versions older than its
    newest ``versions_kept`` go, except its latest fact. (A resource is capped in the rounds after it is written;
    the caller passes the time since its previous round.)

    Never a pending event (the dispatcher has not published it yet).

    Status log: only by age (watchers resume from a cursor anywhere within the retention window), and never the
    latest status event of a resource that still has a row.
    """
    spec = await conn.execute(
        "DELETE FROM events e WHERE e.created_at < now() - make_interval(secs => $1)"
        f" AND e.reconciled_date IS NOT NULL AND {_HAS_ROW} AND (e.payload IS NULL OR {_NEWER_FACT})",
        older_than,
    )
    gone = await conn.execute(
        "DELETE FROM events e WHERE e.created_at < now() - make_interval(secs => $1)"
        f" AND e.reconciled_date IS NOT NULL AND NOT {_HAS_ROW}"
        " AND NOT EXISTS (SELECT 1 FROM events y WHERE y.source_id = e.source_id"
        "  AND y.created_at >= now() - make_interval(secs => $1))",
        older_than,
    )
    capped = "DELETE 0"
    if versions_kept > 0:
        capped = await conn.execute(
            "WITH written AS (SELECT DISTINCT source_id FROM events"
            "  WHERE created_at >= now() - make_interval(secs => $1) AND payload IS NOT NULL),"
            " newest AS (SELECT w.source_id, (SELECT max(x.version) FROM events x WHERE x.source_id = w.source_id)"
            "  AS version FROM written w)"
            " DELETE FROM events e USING newest n WHERE e.source_id = n.source_id AND e.version <= n.version - $2"
            f" AND e.reconciled_date IS NOT NULL AND (e.payload IS NULL OR {_NEWER_FACT})",
            older_than if written_within is None else min(written_within, older_than),
            versions_kept,
        )
    status = await conn.execute(
        "DELETE FROM status_events s WHERE s.created_at < now() - make_interval(secs => $1)"
        " AND NOT (EXISTS (SELECT 1 FROM resources r WHERE r.id = s.resource_id)"
        "  AND NOT EXISTS (SELECT 1 FROM status_events x WHERE x.resource_id = s.resource_id AND x.id > s.id))",
        older_than,
    )
    return {
        "events": sum(int(r.split()[-1]) for r in (spec, gone, capped)),
        "status_events": int(status.split()[-1]),
    }
