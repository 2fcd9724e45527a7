"""SQL of the status path: the facts a status is judged by, the combined writes (a status; a completed delete), and
stored hashes for resync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.store import logs
from server.store.db import Conn


async def consumer_names(conn: Conn, *, after: str = "", limit: int = 100) -> list[str]:
    """Up to ``limit`` consumer names after ``after``, in order (a page of a walk over every consumer)."""
    rows = await conn.fetch("SELECT name FROM consumers WHERE name > $1 ORDER BY name LIMIT $2", after, limit)
    return [r["name"] for r in rows]


async def hashes(conn: Conn, consumer_names: list[str]) -> list[tuple[str, str, str | None]]:
    """``(consumer, resource id, stored status hash or None)`` for every resource of ``consumer_names``, deleting
    ones too, by consumer and id."""
    rows = await conn.fetch(
        "SELECT consumer_name, id, status->>'StatusHash' AS hash FROM resources WHERE consumer_name = ANY($1::text[])"
        " ORDER BY consumer_name, id",
        consumer_names,
    )
    return [(r["consumer_name"], r["id"], r["hash"]) for r in rows]


@dataclass(frozen=True)
class Target:
    """What the status path needs of a resource, without its (possibly large) spec."""

    id: str
    source: str
    type: str
    consumer_name: str
    version: int
    deleting: bool
    sequence_id: str | None
    status_hash: str | None
    observed_version: int | None


async def lock(conn: Conn, resource_id: str) -> Target | None:
    """The resource's status facts under its row lock (until the transaction ends)."""
    r = await conn.fetchrow(
        "SELECT id, source, type, consumer_name, version, deleted_at IS NOT NULL AS deleting,"
        " status->>'SequenceID' AS sequence_id, status->>'StatusHash' AS status_hash,"
        " (status->>'ObservedVersion')::int AS observed_version FROM resources WHERE id = $1 FOR UPDATE",
        resource_id,
    )
    if r is None:
        return None
    return Target(
        id=r["id"],
        source=r["source"],
        type=r["type"],
        consumer_name=r["consumer_name"],
        version=r["version"],
        deleting=r["deleting"],
        sequence_id=r["sequence_id"],
        status_hash=r["status_hash"],
        observed_version=r["observed_version"],
    )


async def store(conn: Conn, target: Target, status: dict[str, Any]) -> None:
    """Write ``resources.status`` and append its ``StatusUpdate`` event (+ NOTIFY) in one round trip."""
    await conn.execute(
        "WITH u AS (UPDATE resources SET status = $2 WHERE id = $1 RETURNING id),"
        " e AS (INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name,"
        "  status_event_type, version, status) SELECT u.id, $3, $4, $5, 'StatusUpdate', $6, $2 FROM u RETURNING id)"
        " SELECT pg_notify('status_events', e.id::text) FROM e",
        target.id,
        status,
        target.source,
        target.type,
        target.consumer_name,
        target.version,
    )


_DELETED_BY = logs.fact("r", "coalesce($3, 'agent:' || r.consumer_name)")
_COMPLETE_DELETE = (
    "WITH r AS (DELETE FROM resources WHERE id = $1 RETURNING *),"
    " s AS (INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name,"
    "  status_event_type, version, status, payload)"
    "  SELECT r.id, r.source, r.type, r.consumer_name, 'StatusDelete', r.version, $2, r.payload FROM r RETURNING id),"
    " n AS (SELECT pg_notify('status_events', s.id::text) FROM s),"
    " p AS (UPDATE events SET reconciled_date = now() WHERE source_id = $1 AND reconciled_date IS NULL"
    "  AND EXISTS (SELECT 1 FROM r) RETURNING 1),"
    " e AS (INSERT INTO events (source_id, consumer_name, event_type, version, payload, reconciled_date)"
    f"  SELECT r.id, r.consumer_name, 'Deleted', r.version, {_DELETED_BY}, now() FROM r RETURNING 1)"
    " SELECT (SELECT count(*) FROM e) AS deleted, (SELECT count(*) FROM n) AS notified"
)


async def complete_delete(conn: Conn, resource_id: str, status: dict[str, Any], *, actor: str | None) -> bool:
    """Complete a two-phase delete in one statement: remove the row; append its ``StatusDelete`` event carrying
    ``status`` and the spec (+ NOTIFY); append its ``Deleted`` spec fact, the last of this resource (the row as it
    was, written by ``actor``, default ``agent:<consumer>``), born reconciled; and mark its pending spec events
    reconciled (there is nothing left to publish). False if there was no such row."""
    row = await conn.fetchrow(_COMPLETE_DELETE, resource_id, status, actor)
    assert row is not None
    return bool(row["deleted"])
