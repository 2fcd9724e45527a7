"""List use cases: one read connection per page, for each collection.

``*_items`` answer the API's items as JSON text rendered by PostgreSQL (what the lists serve), a cursor walk's
next page read ahead (:mod:`server.services.read_ahead`), a page of :data:`listing.SPLIT_MIN` items or more read
in two halves at once on two connections sharing one snapshot (:func:`server.store.db.snapshot`); ``*_page``
answer rows, for the Python presenters when PostgreSQL cannot render a page (``projections.ProjectionError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import databases

from server.services import read_ahead
from server.store import consumers, listing, resources
from server.store.db import Conn, Helper, connection, snapshot
from server.store.rows import ConsumerRow, ResourceRow, ResourceType


async def resource_items(
    db: databases.Database, query: listing.ListQuery, fields: Sequence[str] | None, *, type: ResourceType
) -> listing.Page[str]:
    async def read(query: listing.ListQuery) -> listing.Page[str]:
        async with _reader(db, query) as (conn, helper):
            return await resources.page_json(conn, query, type=type, fields=fields, helper=helper)

    return await read_ahead.of(db).page(("resources", type, _key(fields)), query, read)


async def resource_page(
    db: databases.Database, query: listing.ListQuery, *, type: ResourceType
) -> listing.Page[ResourceRow]:
    async with connection(db) as conn:
        return await resources.page(conn, query, type=type)


async def consumer_items(
    db: databases.Database, query: listing.ListQuery, fields: Sequence[str] | None
) -> listing.Page[str]:
    async def read(query: listing.ListQuery) -> listing.Page[str]:
        async with _reader(db, query) as (conn, helper):
            return await consumers.page_json(conn, query, fields=fields, helper=helper)

    return await read_ahead.of(db).page(("consumers", _key(fields)), query, read)


async def consumer_page(db: databases.Database, query: listing.ListQuery) -> listing.Page[ConsumerRow]:
    async with connection(db) as conn:
        return await consumers.page(conn, query)


@asynccontextmanager
async def _reader(db: databases.Database, query: listing.ListQuery) -> AsyncIterator[tuple[Conn, Helper | None]]:
    """Where a page of items is read: one connection, or for a large page one with a helper in its snapshot."""
    if query.size < listing.SPLIT_MIN:
        async with connection(db) as conn:
            yield conn, None
    else:
        async with snapshot(db) as (conn, helper):
            yield conn, helper


def _key(fields: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if fields is None else tuple(fields)
