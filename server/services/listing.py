"""List use cases: one read connection per page, for each collection.

``*_items`` answer the API's items as JSON text rendered by PostgreSQL (what the lists serve), a cursor walk's
next page read ahead (:mod:`server.services.read_ahead`); ``*_page`` answer rows, for the Python presenters when
PostgreSQL cannot render a page (``projections.ProjectionError``).
"""

from __future__ import annotations

from collections.abc import Sequence

import databases

from server.services import read_ahead
from server.store import consumers, listing, resources
from server.store.db import connection
from server.store.rows import ConsumerRow, ResourceRow, ResourceType


async def resource_items(
    db: databases.Database, query: listing.ListQuery, fields: Sequence[str] | None, *, type: ResourceType
) -> listing.Page[str]:
    async def read(query: listing.ListQuery) -> listing.Page[str]:
        async with connection(db) as conn:
            return await resources.page_json(conn, query, type=type, fields=fields)

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
        async with connection(db) as conn:
            return await consumers.page_json(conn, query, fields=fields)

    return await read_ahead.of(db).page(("consumers", _key(fields)), query, read)


async def consumer_page(db: databases.Database, query: listing.ListQuery) -> listing.Page[ConsumerRow]:
    async with connection(db) as conn:
        return await consumers.page(conn, query)


def _key(fields: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if fields is None else tuple(fields)
