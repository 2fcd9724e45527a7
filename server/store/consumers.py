"""SQL for the ``consumers`` table."""

from __future__ import annotations

from collections.abc import Sequence

from server.store import listing, projections, search
from server.store.db import Conn, Helper
from server.store.rows import ConsumerRow

SCHEMA = search.Schema(
    columns={
        "id": search.Column("consumers.id", "text"),
        "name": search.Column("consumers.name", "text"),
        "created_at": search.Column("consumers.created_at", "timestamp"),
        "updated_at": search.Column("consumers.updated_at", "timestamp"),
    },
    jsonb={"labels": "consumers.labels"},
)


async def insert(conn: Conn, *, id: str, name: str, labels: dict[str, str] | None) -> ConsumerRow:
    row = await conn.fetchrow(
        "INSERT INTO consumers (id, name, labels) VALUES ($1, $2, $3) RETURNING *", id, name, labels
    )
    assert row is not None
    return ConsumerRow.of(row)


async def get(conn: Conn, id: str) -> ConsumerRow | None:
    row = await conn.fetchrow("SELECT * FROM consumers WHERE id = $1", id)
    return ConsumerRow.of(row) if row else None


async def get_by_name(conn: Conn, name: str) -> ConsumerRow | None:
    row = await conn.fetchrow("SELECT * FROM consumers WHERE name = $1", name)
    return ConsumerRow.of(row) if row else None


async def names(conn: Conn) -> list[str]:
    return [r["name"] for r in await conn.fetch("SELECT name FROM consumers ORDER BY name")]


async def update_labels(conn: Conn, id: str, labels: dict[str, str] | None) -> ConsumerRow | None:
    row = await conn.fetchrow(
        "UPDATE consumers SET labels = $2, updated_at = now() WHERE id = $1 RETURNING *", id, labels
    )
    return ConsumerRow.of(row) if row else None


async def delete(conn: Conn, id: str) -> bool:
    """Delete by id; raises asyncpg.ForeignKeyViolationError while resources reference the consumer."""
    return bool(await conn.fetchval("DELETE FROM consumers WHERE id = $1 RETURNING true", id))


COLLECTION = listing.Collection(
    name="consumers",
    table="consumers",
    schema=SCHEMA,
    cursor_orders={"created_at": ("created_at", "id"), "name": ("name",), "id": ("id",)},
)


async def page(conn: Conn, query: listing.ListQuery) -> listing.Page[ConsumerRow]:
    found = await listing.page(conn, COLLECTION, query)
    return listing.Page([ConsumerRow.of(r) for r in found.items], found.total, found.page, found.next)


async def page_json(
    conn: Conn, query: listing.ListQuery, *, fields: Sequence[str] | None = None, helper: Helper | None = None
) -> listing.Page[str]:
    """A page of the API's items as JSON text, rendered by PostgreSQL (:mod:`server.store.projections`)."""
    return await listing.page_json(conn, COLLECTION, query, shape=projections.CONSUMER, fields=fields, helper=helper)
