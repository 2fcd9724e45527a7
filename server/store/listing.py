"""Paged, searchable, ordered lists: the one query shape every collection uses.

``search`` and ``orderBy`` are compiled by :mod:`server.store.search` against a per-table whitelist, so user text
only ever reaches PostgreSQL as bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.store import search
from server.store.db import Conn

MAX_PAGE_SIZE = 65500
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class ListQuery:
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    search: str = ""
    order_by: str = ""


class OrderByError(search.SearchError):
    """A bad ``orderBy`` (upstream answers it as a bad request, code 21, not as a search parse error)."""


async def page(
    conn: Conn,
    *,
    table: str,
    schema: search.Schema,
    query: ListQuery,
    default_order: str,
) -> tuple[list[asyncpg.Record], int]:
    """Return one page of rows of ``table`` and the total count matching the search.

    Raises :class:`search.SearchError` for a bad search, :class:`OrderByError` for a bad orderBy.
    """
    where, params = search.compile_search(query.search, schema=schema)
    try:
        order = search.compile_order_by(query.order_by, schema=schema) or default_order
    except search.SearchError as exc:
        raise OrderByError(str(exc)) from None
    total = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *params)
    if query.size == 0:
        return [], int(total)
    n = len(params)
    rows = await conn.fetch(
        f"SELECT * FROM {table} WHERE {where} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        query.size,
        (query.page - 1) * query.size,
    )
    return rows, int(total)
