"""List use cases: one read connection per page, for each collection."""

from __future__ import annotations

import databases

from server.store import consumers, listing, resources
from server.store.db import connection
from server.store.rows import ConsumerRow, ResourceRow, ResourceType


async def resource_page(
    db: databases.Database, query: listing.ListQuery, *, type: ResourceType
) -> listing.Page[ResourceRow]:
    async with connection(db) as conn:
        return await resources.page(conn, query, type=type)


async def consumer_page(db: databases.Database, query: listing.ListQuery) -> listing.Page[ConsumerRow]:
    async with connection(db) as conn:
        return await consumers.page(conn, query)
