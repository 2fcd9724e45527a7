"""The database handle and the two ways to use it.

``databases.Database`` owns the asyncpg pool. Store functions take a :class:`Conn` — the raw asyncpg connection
of the current ``databases`` connection — so they get prepared statements and native types, while services
still open transactions the ``databases`` way. JSONB is decoded to Python objects by a codec installed on every
pooled connection, so no store function parses JSON by hand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
import databases

from server import dsn
from server.errors import DatabaseUnavailable
from server.store import availability


class Conn(Protocol):
    """The slice of asyncpg's connection API the store uses."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> asyncpg.Record | None: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any: ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def executemany(
        self, command: str, args: Sequence[Sequence[Any]], *, timeout: float | None = None
    ) -> None: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=_dumps, decoder=json.loads, schema="pg_catalog")


async def _release(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool beyond asyncpg's own rollback of an open transaction:
    nothing, and no round trip to PostgreSQL for it. asyncpg's default sends ``RESET ALL``, ``UNLISTEN *``,
    ``CLOSE ALL`` and ``pg_advisory_unlock_all()`` after every use, for session state the store never leaves on
    a pooled connection (settings are ``SET LOCAL``, cursors live in transactions, LISTEN has its own
    connection, no advisory locks): one more wait on PostgreSQL per request, per page of a list."""


def database(url: str, *, max_size: int = 50) -> databases.Database:
    """A pool for ``url`` (not yet connected)."""
    return databases.Database(
        dsn.for_databases(url), min_size=1, max_size=max_size, init=init_connection, reset=_release
    )


@asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    """Turn a failure that means the database is away into :class:`DatabaseUnavailable` and keep the process's
    view of it (:mod:`server.store.availability`) up to date."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if not availability.unavailable(exc):
            raise
        availability.STATE.failed(exc)
        raise DatabaseUnavailable() from exc
    availability.STATE.succeeded()


@asynccontextmanager
async def transaction(db: databases.Database) -> AsyncIterator[Conn]:
    """One transaction on one pooled connection; commits on exit, rolls back on error.

    NB: the transaction is asyncpg's, not ``databases``': ``databases.Transaction.start`` takes a reference on the
    pooled connection before ``BEGIN`` and never gives it back when ``BEGIN`` is cancelled (a client that hangs up,
    a shutdown), which leaks the connection and hangs ``Database.disconnect()``. asyncpg's transaction holds no
    such reference, and the pool resets a connection released mid-transaction.
    """
    async with _reachable(), db.connection() as connection:
        raw = connection.raw_connection
        async with raw.transaction():
            yield raw


@asynccontextmanager
async def connection(db: databases.Database) -> AsyncIterator[Conn]:
    """A pooled connection in autocommit mode, for reads."""
    async with _reachable(), db.connection() as connection:
        yield connection.raw_connection
