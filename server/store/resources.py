"""SQL for the ``resources`` table (single resources and bundles alike; ``type`` tells them apart)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from server.store import jsonb, listing, logs, projections, search
from server.store.db import Conn, Helper
from server.store.rows import ResourceRow, ResourceType

SCHEMA = search.Schema(
    columns={
        "id": search.Column("resources.id", "text"),
        "name": search.Column("resources.name", "text"),
        "source": search.Column("resources.source", "text"),
        "consumer_name": search.Column("resources.consumer_name", "text"),
        "version": search.Column("resources.version", "int"),
        "created_at": search.Column("resources.created_at", "timestamp"),
        "updated_at": search.Column("resources.updated_at", "timestamp"),
        "deleted_at": search.Column("resources.deleted_at", "timestamp"),
    },
    jsonb={"payload": "resources.payload", "status": "resources.status"},
    # NB: migrations/20261129_11_search_and_maintenance_indexes.sql: GIN (jsonb_path_ops) on (payload -> 'metadata').
    indexed_json={"resources.payload": ("metadata",)},
)


@dataclass(frozen=True)
class NewRow:
    """A row to insert (see :func:`insert`)."""

    id: str
    name: str
    source: str
    consumer_name: str
    type: ResourceType
    payload: dict[str, Any]
    actor: str


_INSERTED: Final = "r.id, r.version, r.created_at, r.updated_at"
"""What an insert returns: what PostgreSQL decided (see :func:`_inserted`)."""


def _inserted(new: NewRow, r: asyncpg.Record) -> ResourceRow:
    """The row ``new`` became: built from what was sent, not decoded from what PostgreSQL would send back."""
    return ResourceRow(
        id=new.id,
        name=new.name,
        source=new.source,
        consumer_name=new.consumer_name,
        type=new.type,
        version=r["version"],
        payload=jsonb.stored(new.payload),
        status=None,
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        deleted_at=None,
    )


async def insert(conn: Conn, new: NewRow) -> ResourceRow:
    """Insert at version 1 together with its ``Create`` spec event (carrying the row, see :func:`logs.fact`) and
    the dispatchers' NOTIFY, in one statement (so one round trip, and atomic even outside a transaction).

    Raises UniqueViolationError (id or name) or ForeignKeyViolationError (consumer).
    """
    row = await conn.fetchrow(
        "WITH r AS (INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
        " VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING *),"
        " e AS (INSERT INTO events (source_id, consumer_name, event_type, version, payload)"
        f"  SELECT r.id, r.consumer_name, 'Create', r.version, {logs.fact('r', '$7')} FROM r RETURNING consumer_name),"
        " n AS (SELECT pg_notify('events', e.consumer_name) FROM e)"
        f" SELECT {_INSERTED}, (SELECT count(*) FROM n) AS notified FROM r",
        new.id,
        new.name,
        new.source,
        new.consumer_name,
        new.type,
        new.payload,
        new.actor,
    )
    assert row is not None
    return _inserted(new, row)


_INSERT_MANY = (
    "WITH u AS (SELECT * FROM jsonb_to_recordset($1::jsonb)"
    "  AS u (id text, name text, source text, consumer_name text, type text, payload jsonb, actor text)),"
    " r AS (INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
    "  SELECT u.id, u.name, u.source, u.consumer_name, u.type, 1, u.payload FROM u"
    "  WHERE EXISTS (SELECT FROM consumers c WHERE c.name = u.consumer_name)"
    "  ON CONFLICT DO NOTHING RETURNING *),"
    " e AS (INSERT INTO events (source_id, consumer_name, event_type, version, payload)"
    f"  SELECT r.id, r.consumer_name, 'Create', r.version, {logs.fact('r', 'u.actor')} FROM r JOIN u ON u.id = r.id"
    "  RETURNING consumer_name),"
    " n AS (SELECT pg_notify('events', c.consumer_name) FROM (SELECT DISTINCT consumer_name FROM e) c)"
    f" SELECT {_INSERTED}, (SELECT count(*) FROM n) AS notified FROM r"
)


async def insert_many(conn: Conn, rows: Sequence[NewRow]) -> list[ResourceRow | None]:
    """Insert what :func:`insert` would, many rows in one statement: each row with its ``Create`` event, one
    NOTIFY per consumer. Answers per row, in order, the inserted row or None for one not inserted: its id or
    name is taken (by a stored row or by an earlier one of ``rows``) or its consumer does not exist. It raises
    only what any statement may (a consumer deleted meanwhile: ForeignKeyViolationError, for all of them)."""
    ids, names = set(), set()
    unique: list[NewRow] = []  # NB: a repeated id or name is left to its single-row path, after this one.
    for r in rows:
        if r.id not in ids and r.name not in names:
            unique.append(r)
        ids.add(r.id)
        names.add(r.name)
    # NB: the rows as one JSON document: binding seven arrays (a codec call and type checks per element) cost
    # ~20 % more of the hub's CPU per statement.
    inserted = await conn.fetch(_INSERT_MANY, [vars(r) for r in unique])  # NB: a NewRow's fields, not copied
    by_id = {row["id"]: row for row in inserted}
    answers: list[ResourceRow | None] = []
    for r in rows:
        row = by_id.pop(r.id, None)  # NB: pop: of two rows with one id, only the first went into the statement.
        answers.append(_inserted(r, row) if row is not None else None)
    return answers


async def get(conn: Conn, id: str, *, lock: bool = False) -> ResourceRow | None:
    """The row, soft-deleted or not; ``lock`` takes the row lock until the transaction ends."""
    row = await conn.fetchrow("SELECT * FROM resources WHERE id = $1" + (" FOR UPDATE" if lock else ""), id)
    return ResourceRow.of(row) if row else None


async def get_many(conn: Conn, ids: list[str]) -> list[ResourceRow]:
    return [ResourceRow.of(r) for r in await conn.fetch("SELECT * FROM resources WHERE id = ANY($1)", ids)]


async def for_consumer(conn: Conn, consumer_name: str, *, source: str | None = None) -> list[ResourceRow]:
    rows = await conn.fetch(
        "SELECT * FROM resources WHERE consumer_name = $1 AND ($2::text IS NULL OR source = $2)", consumer_name, source
    )
    return [ResourceRow.of(r) for r in rows]


def _changed(update: str, event_type: logs.SpecEventType) -> str:
    """One statement: ``update`` (an UPDATE … RETURNING * of one row, taking ``$1`` the id and ``$2`` the actor),
    its spec event carrying the updated row, and the dispatchers' NOTIFY."""
    return (
        f"WITH r AS ({update}),"
        " e AS (INSERT INTO events (source_id, consumer_name, event_type, version, payload)"
        f"  SELECT r.id, r.consumer_name, '{event_type}', r.version, {logs.fact('r', '$2')} FROM r"
        "  RETURNING consumer_name),"
        " n AS (SELECT pg_notify('events', e.consumer_name) FROM e)"
        " SELECT r.*, (SELECT count(*) FROM n) AS notified FROM r"
    )


_UPDATE_SPEC = _changed(
    "UPDATE resources SET payload = $3, version = version + 1, updated_at = now() WHERE id = $1 RETURNING *", "Update"
)
_MARK_DELETING = _changed(
    "UPDATE resources SET deleted_at = now(), updated_at = now() WHERE id = $1 RETURNING *", "Delete"
)


async def update_spec(conn: Conn, id: str, *, payload: dict[str, Any], actor: str) -> ResourceRow:
    """The next version with its ``Update`` event and NOTIFY (one statement)."""
    row = await conn.fetchrow(_UPDATE_SPEC, id, actor, payload)
    assert row is not None
    return ResourceRow.of(row)


async def mark_deleting(conn: Conn, id: str, *, actor: str) -> ResourceRow:
    """Start the two-phase delete: ``deleted_at`` with its ``Delete`` event and NOTIFY (one statement)."""
    row = await conn.fetchrow(_MARK_DELETING, id, actor)
    assert row is not None
    return ResourceRow.of(row)


async def set_status(conn: Conn, id: str, status: dict[str, Any]) -> None:
    await conn.execute("UPDATE resources SET status = $2 WHERE id = $1", id, status)


def collection(type: ResourceType) -> listing.Collection:
    """The list of single resources (``/resources``) or of bundles (``/resource-bundles``)."""
    return _COLLECTIONS[type]


_CURSOR_ORDERS = {"created_at": ("created_at", "id"), "name": ("name",), "id": ("id",)}
_COLLECTIONS: dict[ResourceType, listing.Collection] = {
    "Single": listing.Collection(
        name="resources",
        table="resources",
        schema=SCHEMA,
        cursor_orders=_CURSOR_ORDERS,
        scope="resources.type = 'Single'",
    ),
    "Bundle": listing.Collection(
        name="resource-bundles",
        table="resources",
        schema=SCHEMA,
        cursor_orders=_CURSOR_ORDERS,
        scope="resources.type = 'Bundle'",
    ),
}


async def page(conn: Conn, query: listing.ListQuery, *, type: ResourceType) -> listing.Page[ResourceRow]:
    """A page of rows (for the presenters in Python: see :func:`page_json`)."""
    found = await listing.page(conn, collection(type), query)
    return listing.Page([ResourceRow.of(r) for r in found.items], found.total, found.page, found.next)


async def page_json(
    conn: Conn,
    query: listing.ListQuery,
    *,
    type: ResourceType,
    fields: Sequence[str] | None = None,
    helper: Helper | None = None,
) -> listing.Page[str]:
    """A page of the API's items as JSON text, rendered by PostgreSQL (:mod:`server.store.projections`).

    Raises :class:`projections.ProjectionError` when PostgreSQL cannot render one of them.
    """
    shape = projections.SINGLE if type == "Single" else projections.BUNDLE
    return await listing.page_json(conn, collection(type), query, shape=shape, fields=fields, helper=helper)
