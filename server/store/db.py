"""The database handle and the ways to use it.

``databases.Database`` owns the asyncpg pool. Store functions take a :class:`Conn` — the raw asyncpg connection
of the current ``databases`` connection — so they get prepared statements and native types, while services
still open transactions the ``databases`` way. JSONB is decoded to Python objects by a codec installed on every
pooled connection, so no store function parses JSON by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

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
async def snapshot(db: databases.Database) -> AsyncIterator[tuple[Conn, Helper]]:
    """A read-only REPEATABLE READ transaction on one pooled connection, and a :class:`Helper` that runs a statement
    on a second connection in the same snapshot (what one statement would see): one large read, split in two,
    renders on two PostgreSQL backends at once. On exit it waits for the helper's statement, if it started."""
    async with _reachable(), _pooled(db) as raw, raw.transaction(isolation="repeatable_read", readonly=True):
        helper = Helper(db, await raw.fetchval("SELECT pg_export_snapshot()"))
        try:
            yield raw, helper
        finally:
            await helper.settle()


HELPER_GRACE: Final = 0.05
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


class Helper:
    """Statements in an exported snapshot on another pooled connection, each in a task of its own.

    Never a deadlock on a busy pool: a part that has not got its connection within :data:`HELPER_GRACE` seconds of
    the moment its result is wanted is abandoned (:meth:`Part.rows` answers None, and the caller runs the
    statement itself)."""

    def __init__(self, db: databases.Database, snapshot_id: str) -> None:
        if not _SNAPSHOT_ID.match(snapshot_id):  # NB: interpolated into SET TRANSACTION SNAPSHOT, which binds nothing
            raise ValueError(f"unexpected snapshot id {snapshot_id!r}")
        self.db = db
        self.snapshot_id = snapshot_id
        self._parts: list[Part] = []

    def fetch(self, query: str, *args: Any) -> Part:
        part = Part()
        part.task = asyncio.create_task(self._run(part, query, args))
        self._parts.append(part)
        return part

    async def _run(self, part: Part, query: str, args: Sequence[Any]) -> list[asyncpg.Record] | None:
        async with _reachable(), _pooled(self.db) as raw:
            if part.abandoned:
                return None
            part.started.set()  # NB: from here on the caller waits for this part (it holds its connection).
            async with raw.transaction(isolation="repeatable_read", readonly=True):
                await raw.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot_id}'")
                rows: list[asyncpg.Record] = await raw.fetch(query, *args)
                return rows

    async def settle(self) -> None:
        """Abandon the parts not started; wait for the others (the exporting transaction must outlive them)."""
        for part in self._parts:
            part.abandon()
        tasks = [part.task for part in self._parts]
        if tasks:
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # NB: retrieved: a part whose caller failed first logs nothing of its own.


class Part:
    """One statement of a :class:`Helper`."""

    task: asyncio.Task[list[asyncpg.Record] | None]

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.abandoned = False

    def abandon(self) -> None:
        if not self.started.is_set():
            self.abandoned = True
            self.task.cancel()

    async def rows(self) -> list[asyncpg.Record] | None:
        """The statement's rows, or None when it got no connection in time (it will not run: the caller runs it)."""
        if not self.started.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HELPER_GRACE):
                    await self.started.wait()
        self.abandon()
        await asyncio.wait([self.task])  # NB: not ``await task``: a cancelled part must not read as our cancellation
        if self.abandoned:
            return None
        return self.task.result()


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
