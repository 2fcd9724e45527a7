"""The database handle and the two ways to use it.

``databases.Database`` owns the asyncpg pool. Store functions take a :class:`Conn` — the raw asyncpg connection
of the current ``databases`` connection — so they get prepared statements and native types, while services
still open transactions the ``databases`` way. JSONB is decoded to Python objects by a codec installed on every
pooled connection, so no store function parses JSON by hand.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
import databases

from protocol import types
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


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=types.to_json, decoder=json.loads, schema="pg_catalog")


async def reset_connection(conn: asyncpg.Connection) -> None:
    """What the pool runs on a connection given back, after asyncpg has rolled back any transaction left open.

    Nothing: asyncpg's default reset is a round trip per release (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
    *; RESET ALL``) that undoes session state the hub never leaves on a pooled connection: it takes no advisory
    locks, declares no cursors outside transactions, LISTENs on connections of its own (:mod:`server.dispatch.listen`)
    and sets settings only with ``SET LOCAL``. That round trip was ~8 % of the hub's CPU under creates.
    """


def database(url: str, *, max_size: int = 50) -> databases.Database:
    """A pool for ``url`` (not yet connected).

    NB: ``databases`` hands asyncpg only the URL's host, port, user, password and database, so ``sslmode``,
    ``sslrootcert`` and the other libpq parameters would be dropped (an unverified TLS attempt that falls back to
    plain text); asyncpg reads them from the whole URL given as ``dsn``."""
    return databases.Database(
        dsn.for_databases(url),
        min_size=1,
        max_size=max_size,
        init=init_connection,
        reset=reset_connection,
        dsn=dsn.plain(url),
    )


@asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    """Turn a failure that means the database is away into :class:`DatabaseUnavailable` and keep the process's
    view of it (:mod:`server.store.availability`) up to date."""
    started = time.monotonic()
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if not availability.unavailable(exc):
            raise
        availability.STATE.failed(exc)
        raise DatabaseUnavailable() from exc
    availability.STATE.succeeded(started)


@asynccontextmanager
async def transaction(db: databases.Database) -> AsyncIterator[Conn]:
    """One transaction on one pooled connection; commits on exit, rolls back on error.

    NB: the transaction is asyncpg's, not ``databases``': ``databases.Transaction.start`` takes a reference on the
    pooled connection before ``BEGIN`` and never gives it back when ``BEGIN`` is cancelled (a client that hangs up,
    a shutdown), which leaks the connection and hangs ``Database.disconnect()``. asyncpg's transaction holds no
    such reference, and the pool resets a connection released mid-transaction.
    """
    async with _reachable(), _pooled(db) as raw, raw.transaction():
        yield raw


@asynccontextmanager
async def connection(db: databases.Database) -> AsyncIterator[Conn]:
    """A pooled connection in autocommit mode, for reads."""
    async with _reachable(), _pooled(db) as raw:
        yield raw


@asynccontextmanager
async def _pooled(db: databases.Database) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; one that a failure may have left in the middle of the protocol is closed rather than
    given back (the pool's :func:`reset_connection` sends nothing, so it would not find out, and the next user
    would fail with "another operation is in progress")."""
    async with db.connection() as connection:
        raw = connection.raw_connection
        try:
            yield raw
        except BaseException as exc:
            if _broken(exc):
                # NB: a connection that asyncpg saw close has already gone back to the pool (as closed).
                with contextlib.suppress(asyncpg.InterfaceError):
                    raw.terminate()
            raise


def _broken(exc: BaseException) -> bool:
    """Whether ``exc`` may leave its connection unusable: the client library's own failures and the server's
    "unavailable" ones. A statement's ordinary error (a constraint, a bad value) leaves it ready."""
    if isinstance(exc, asyncpg.PostgresError):
        return availability.unavailable(exc)
    return isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError)
