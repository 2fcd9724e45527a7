"""Paged, searchable, ordered lists: the one query shape every collection uses.

``search`` and ``orderBy`` are compiled by :mod:`server.store.search` against a per-table whitelist, so user text
only ever reaches PostgreSQL as bound parameters.

Two ways through a list: by page number (``page``/``size``, upstream's, ``LIMIT/OFFSET``) and by cursor
(``after``, :mod:`server.store.keyset`). ``total`` is the number of rows matching the search:

- by page number, exact on every page, as upstream; it is counted only when the page itself cannot tell (a page
  that is neither full nor empty past the first ends the list, so ``total`` is the rows before it plus its own);
- by cursor, counted once on the walk's first page (in that page's own query, no second round trip) and carried in
  ``next`` to the later ones (it is the total as the walk started). Exact up to :data:`EXACT_TOTAL_LIMIT`; past it,
  PostgreSQL's planner estimate (so a first page costs the same at any table size), never less than the limit plus
  one.

A page of :data:`SPLIT_MIN` rows or more is read in two halves at once, on two connections sharing one snapshot
(:func:`server.store.db.snapshot`): rendering the items is most of a large page's time and PostgreSQL renders
each statement's rows on one backend. The halves see one state of the table and order ties by id, so the page is
what one statement would answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Generic, TypeVar

import asyncpg

from server.store import keyset, projections, search
from server.store.db import Conn, Helper

MAX_PAGE_SIZE = 65500
DEFAULT_PAGE_SIZE = 100
EXACT_TOTAL_LIMIT: Final = 10_000
SPLIT_MIN: Final = 1000
"""A page of at least this many rows, read with a :class:`~server.store.db.Helper`, is read in two halves at once
(its items render on two PostgreSQL backends): about 40 % less time for 6,000 items on two cores."""

Item = TypeVar("Item")
Columns = Callable[[int], tuple[str, list[object]]]
"""What a list selects: given the number of its first parameter, the SQL and its parameters."""


@dataclasses.dataclass(frozen=True)
class ListQuery:
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    search: str = ""
    order_by: str = ""
    after: str | None = None
    """``None``: a page by number. Else a cursor walk: ``""`` starts one, a ``next`` token continues it."""


@dataclasses.dataclass(frozen=True)
class Collection:
    """One list endpoint's table: what its search may name and which orders its cursor follows."""

    name: str
    """As the API says it (``resource-bundles``); tokens of one collection are refused by another."""
    table: str
    schema: search.Schema
    cursor_orders: Mapping[str, tuple[str, ...]]
    """orderBy column → its unique key (names in ``schema.columns``); the first is the default order."""
    scope: str = "TRUE"
    """Our own SQL condition every row of the collection meets (``resources.type = 'Bundle'``)."""


@dataclasses.dataclass(frozen=True)
class Page(Generic[Item]):
    items: list[Item]
    total: int
    page: int
    next: str | None = None
    """The token of the page after this one in a cursor walk; ``None`` on its last page, or by page number."""


class OrderByError(search.SearchError):
    """A bad ``orderBy`` (upstream answers it as a bad request, code 21, not as a search parse error)."""


async def page(
    conn: Conn,
    collection: Collection,
    query: ListQuery,
    *,
    columns: Columns | None = None,
    helper: Helper | None = None,
) -> Page[asyncpg.Record]:
    """One page of ``columns`` of the rows of ``collection`` matching the search; a page of :data:`SPLIT_MIN` rows
    or more in two halves at once when ``helper`` reads ``conn``'s snapshot (:func:`server.store.db.snapshot`).

    Raises :class:`search.SearchError` for a bad search, :class:`OrderByError` for a bad orderBy and
    :class:`keyset.CursorError` for a bad ``after`` or an orderBy the cursor cannot follow.
    """
    where, params = search.compile_search(query.search, schema=collection.schema)
    where = f"({collection.scope}) AND {where}"
    columns = columns or (lambda first_param: (f"{collection.table}.*", []))
    if query.after is not None:
        return await _cursor_page(conn, collection, query, where=where, params=params, columns=columns, helper=helper)
    try:
        default = ", ".join(collection.schema.columns[n].sql for n in next(iter(collection.cursor_orders.values())))
        order = search.compile_order_by(query.order_by, schema=collection.schema) or default
    except search.SearchError as exc:
        raise OrderByError(str(exc)) from None
    if query.size == 0:
        return Page([], await _count(conn, collection, where, params), query.page)
    select, select_params = columns(len(params) + 1)
    n = len(params) + len(select_params)
    offset = (query.page - 1) * query.size
    split = helper if query.size >= SPLIT_MIN else None
    if split is not None:
        order += f", {collection.table}.id"  # NB: two statements must agree on the order of ties.
    sql = _offset_page(collection, select, where=where, order=order, limit=f"LIMIT ${n + 1} OFFSET ${n + 2}")
    rows = await _fetch(conn, split, sql, sql, [*params, *select_params], limit=query.size, offset=offset)
    if 0 < len(rows) < query.size or (not rows and offset == 0):
        total = offset + len(rows)
    else:
        total = await _count(conn, collection, where, params)
    return Page(rows, total, query.page)


async def page_json(
    conn: Conn,
    collection: Collection,
    query: ListQuery,
    *,
    shape: Sequence[projections.Field],
    fields: Sequence[str] | None,
    helper: Helper | None = None,
) -> Page[str]:
    """One page of items as PostgreSQL renders them (JSON text), projected to ``fields`` if given.

    Raises :class:`projections.ProjectionError` for a row PostgreSQL cannot render (see that module).
    """

    def columns(first_param: int) -> tuple[str, list[object]]:
        sql, params = projections.select(shape, fields, first_param=first_param)
        return f"{sql} AS item", params

    try:
        found = await page(conn, collection, query, columns=columns, helper=helper)
    except asyncpg.DataError as exc:
        raise projections.ProjectionError(str(exc)) from None
    return Page([r["item"] for r in found.items], found.total, found.page, found.next)


async def _cursor_page(
    conn: Conn,
    collection: Collection,
    query: ListQuery,
    *,
    where: str,
    params: list[object],
    columns: Columns,
    helper: Helper | None,
) -> Page[asyncpg.Record]:
    keys = keyset.keyset(collection.name, collection.schema, collection.cursor_orders, query.order_by)
    position = keyset.decode(keys, query.after) if query.after else None
    select, select_params = columns(len(params) + 1)
    selected = [select, *keyset.key_columns(keys)]
    counted = list(selected)
    condition, after_params = where, list[object]()
    if position is None:
        # NB: counted in the page's own query (an InitPlan, run once), not in a second round trip.
        counted.append(f"({_upto(collection, where)}) AS _upto")
    else:
        condition += " AND " + keys.after_sql(len(params) + len(select_params) + 1)
        after_params = list(position.key)
    n = len(params) + len(select_params) + len(after_params)
    args = [*params, *select_params, *after_params]
    if helper is not None and query.size >= SPLIT_MIN:
        limit = f"LIMIT ${n + 1} OFFSET ${n + 2}"
        first, rest = (
            _paged(collection, ", ".join(cols), where=condition, order=keys.order_sql, limit=limit)
            for cols in (counted, selected)
        )
        rows = await _fetch(conn, helper, first, rest, args, limit=query.size + 1)
    else:
        sql = _paged(collection, ", ".join(counted), where=condition, order=keys.order_sql, limit=f"LIMIT ${n + 1}")
        rows = await conn.fetch(sql, *args, query.size + 1)
    more = len(rows) > query.size
    rows = rows[: query.size]
    if position is not None:
        total, number = position.total, position.page + 1
    elif more:
        total, number = await _first_total(conn, collection, where, params, counted=rows[0]["_upto"]), 1
    else:
        total, number = len(rows), 1
    token = None
    if more:
        last = tuple(rows[-1][f"_k{i}"] for i in range(len(keys.columns)))
        token = keyset.encode(keys, keyset.Position(key=last, page=number, total=total))
    return Page(rows, total, number, token)


async def _fetch(
    conn: Conn, helper: Helper | None, first: str, rest: str, args: list[object], *, limit: int, offset: int = 0
) -> list[asyncpg.Record]:
    """The rows ``first`` selects at ``LIMIT limit OFFSET offset`` (its last two parameters); with a ``helper``, its
    first half by ``first`` here and the rest by ``rest`` (the same rows, maybe fewer columns) on the helper at
    the same time."""
    if helper is None:
        return list(await conn.fetch(first, *args, limit, offset))
    half = (limit + 1) // 2
    second = helper.fetch(rest, *args, limit - half, offset + half)
    rows = list(await conn.fetch(first, *args, half, offset))
    more = await second.rows()
    if more is None:  # NB: the pool had no connection to spare in time.
        more = await conn.fetch(rest, *args, limit - half, offset + half)
    return rows + list(more)


def _paged(collection: Collection, select: str, *, where: str, order: str, limit: str) -> str:
    """The page's rows in a subquery, ``select`` over them: PostgreSQL evaluates a select list for every row it
    reads, those an OFFSET skips included, and an item's JSON is costly (and a row's columns only references)."""
    table = collection.table
    return (
        f"SELECT {select} FROM (SELECT * FROM {table} WHERE {where} ORDER BY {order} {limit}) AS {table}"
        f" ORDER BY {order}"
    )


def _offset_page(collection: Collection, select: str, *, where: str, order: str, limit: str) -> str:
    """As :func:`_paged`, and the subquery selects the ids only: the rows an OFFSET skips are then read from the
    index alone where it can (the default order), not from the table."""
    table = collection.table
    return (
        f"SELECT {select} FROM (SELECT {table}.id FROM {table} WHERE {where} ORDER BY {order} {limit}) AS page"
        f" JOIN {table} ON {table}.id = page.id ORDER BY {order}"
    )


async def _count(conn: Conn, collection: Collection, where: str, params: list[object]) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {collection.table} WHERE {where}", *params))


def _upto(collection: Collection, where: str) -> str:
    """The number of rows matching ``where``, counted up to :data:`EXACT_TOTAL_LIMIT` plus one."""
    limit = EXACT_TOTAL_LIMIT + 1
    return f"SELECT count(*) FROM (SELECT 1 FROM {collection.table} WHERE {where} LIMIT {limit}) AS upto"


async def _first_total(conn: Conn, collection: Collection, where: str, params: list[object], *, counted: int) -> int:
    """``counted`` (:func:`_upto`) when exact, else the planner's estimate (see the module docstring)."""
    if counted <= EXACT_TOTAL_LIMIT:
        return counted
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {collection.table} WHERE {where}", *params)
    document = json.loads(plan) if isinstance(plan, str) else plan
    return max(counted, int(document[0]["Plan"]["Plan Rows"]))
