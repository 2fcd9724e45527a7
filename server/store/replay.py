"""The ``resources`` table as a projection of the two logs, and the SQL that compares or rebuilds it.

A resource as the logs tell it: its latest spec event that carries a payload (:func:`server.store.logs.fact`)
gives every column but ``status`` — unless that event is ``Deleted``, and then the resource is gone; its latest
status event gives ``status`` (NULL when that is a ``StatusDelete``: a previous life of the same id ended there).
"Latest" is by event id: every writer of one resource holds its row lock (or inserts the row) before it takes its
event's id, so the ids of one resource's events are in commit order. Spec events without a payload
(maintenance's re-publish nudges, or rows written before the payload migration) tell nothing and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from server.store import maintenance
from server.store.db import Conn

FIELDS: Final = (
    "name",
    "source",
    "consumer_name",
    "type",
    "version",
    "payload",
    "status",
    "created_at",
    "updated_at",
    "deleted_at",
)


def _logged(*, only: bool = False) -> str:
    """The CTEs ending in ``logged``: each resource as the logs tell it (``only``: of the ids in ``$1``)."""
    return (
        "WITH spec AS ("
        " SELECT DISTINCT ON (source_id) source_id AS id, consumer_name, event_type, version, payload AS fact"
        f" FROM events e WHERE payload IS NOT NULL{' AND source_id = ANY($1::text[])' if only else ''}"
        " ORDER BY source_id, e.id DESC),"
        " st AS ("
        " SELECT DISTINCT ON (resource_id) resource_id AS id, status_event_type, status"
        f" FROM status_events e{' WHERE resource_id = ANY($1::text[])' if only else ''}"
        " ORDER BY resource_id, e.id DESC),"
        " logged AS ("
        " SELECT s.id, s.fact->>'name' AS name, s.fact->>'source' AS source, s.consumer_name,"
        "  s.fact->>'type' AS type, s.version, s.fact->'spec' AS payload,"
        "  CASE WHEN st.status_event_type = 'StatusUpdate' THEN st.status END AS status,"
        "  (s.fact->>'created_at')::timestamptz AS created_at, (s.fact->>'updated_at')::timestamptz AS updated_at,"
        "  (s.fact->>'deleted_at')::timestamptz AS deleted_at"
        " FROM spec s LEFT JOIN st ON st.id = s.id WHERE s.event_type <> 'Deleted')"
    )


_COLUMNS: Final = ", ".join(FIELDS)
_DIFFERENT: Final = f"(l.{', l.'.join(FIELDS)}) IS DISTINCT FROM (r.{', r.'.join(FIELDS)})"

Verdict = Literal["missing", "deleted", "unlogged", "differs"]


@dataclass(frozen=True)
class Difference:
    """One resource whose row is not what the logs say.

    ``missing``: the logs have it, the table does not. ``deleted``: the logs say its delete completed, the table
    still has it. ``unlogged``: the table has it, the logs hold no fact of it (written before the payload
    migration and never backfilled, or its events were removed by hand): nothing to rebuild it from.
    ``differs``: both have it; ``fields`` lists the columns that differ, ``logged``/``stored`` their values.
    """

    id: str
    verdict: Verdict
    fields: tuple[str, ...] = ()
    logged: dict[str, Any] = field(default_factory=dict)
    stored: dict[str, Any] = field(default_factory=dict)


async def compare(conn: Conn) -> list[Difference]:
    """Every difference between the logs and the table, by resource id (one statement: one snapshot)."""
    rows = await conn.fetch(
        _logged() + " SELECT coalesce(l.id, r.id) AS id, l.id IS NOT NULL AS in_log, r.id IS NOT NULL AS in_table,"
        " EXISTS (SELECT 1 FROM spec s WHERE s.id = r.id AND s.event_type = 'Deleted') AS log_deleted,"
        f" CASE WHEN l.id IS NOT NULL THEN jsonb_build_array(l.{', l.'.join(FIELDS)}) END AS logged,"
        f" CASE WHEN r.id IS NOT NULL THEN jsonb_build_array(r.{', r.'.join(FIELDS)}) END AS stored"
        f" FROM logged l FULL JOIN resources r ON r.id = l.id WHERE {_DIFFERENT} ORDER BY 1"
    )
    found: list[Difference] = []
    for r in rows:
        if not r["in_table"]:
            found.append(Difference(r["id"], "missing", FIELDS, logged=dict(zip(FIELDS, r["logged"], strict=True))))
        elif not r["in_log"]:
            found.append(Difference(r["id"], "deleted" if r["log_deleted"] else "unlogged"))
        else:
            logged = dict(zip(FIELDS, r["logged"], strict=True))
            stored = dict(zip(FIELDS, r["stored"], strict=True))
            fields = tuple(f for f in FIELDS if logged[f] != stored[f])
            found.append(
                Difference(
                    r["id"],
                    "differs",
                    fields,
                    logged={f: logged[f] for f in fields},
                    stored={f: stored[f] for f in fields},
                )
            )
    return found


async def tune(conn: Conn) -> None:
    """For the rest of the caller's transaction: sort and hash the whole log in memory (a one-off command, not a
    hot path), and skip JIT compilation (it costs more than it saves here): a quarter less CPU at 100,000
    resources."""
    await conn.execute("SET LOCAL work_mem = '128MB'")
    await conn.execute("SET LOCAL jit = off")


async def lock(conn: Conn) -> None:
    """Hold every writer of ``resources`` (and so of the logs: they are written together) until the transaction
    ends; readers go on."""
    await conn.execute("LOCK TABLE resources IN SHARE ROW EXCLUSIVE MODE")


async def apply(conn: Conn, differences: list[Difference]) -> dict[str, int]:
    """Rebuild the rows of these ``differences`` (found by :func:`compare` in this transaction, under
    :func:`lock`) from the logs, and wake the dispatchers for every spec that changed. ``unlogged`` rows are left
    as they are: there is nothing to rebuild them from."""
    ids = {v: [d.id for d in differences if d.verdict == v] for v in ("missing", "deleted", "differs")}
    deleted = await conn.fetch("DELETE FROM resources WHERE id = ANY($1::text[]) RETURNING id", ids["deleted"])
    inserted = await conn.fetch(
        _logged(only=True) + f" INSERT INTO resources (id, {_COLUMNS}) SELECT id, {_COLUMNS} FROM logged"
        " RETURNING id, consumer_name, version, deleted_at IS NOT NULL AS deleting",
        ids["missing"],
    )
    updated = await conn.fetch(
        _logged(only=True) + ","
        " old AS (SELECT id, payload, version, deleted_at FROM resources WHERE id = ANY($1::text[]))"
        f" UPDATE resources r SET {', '.join(f'{f} = l.{f}' for f in FIELDS)} FROM logged l, old"
        " WHERE l.id = r.id AND old.id = r.id"
        " RETURNING r.id, r.consumer_name, r.version, r.deleted_at IS NOT NULL AS deleting,"
        " (old.payload, old.version, old.deleted_at) IS DISTINCT FROM (l.payload, l.version, l.deleted_at) AS respec",
        ids["differs"],
    )
    republish = [*inserted, *(u for u in updated if u["respec"])]
    await maintenance.append_events(conn, [(r["id"], r["consumer_name"], _nudge(r), r["version"]) for r in republish])
    return {"inserted": len(inserted), "updated": len(updated), "deleted": len(deleted)}


def _nudge(row: Any) -> str:
    """The event type a re-publish of this row carries (as maintenance writes them: no payload)."""
    return "Delete" if row["deleting"] else "Create" if row["version"] == 1 else "Update"
