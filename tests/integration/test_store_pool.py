"""A pooled connection goes back to the pool without a round trip to PostgreSQL, and still comes back clean: a
transaction left open on it is rolled back, and one whose session ended under a statement is not given back."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from server.errors import DatabaseUnavailable
from server.store import db as store_db


async def test_release_sends_nothing_to_postgresql(db_url: str) -> None:
    database = store_db.database(db_url, max_size=1)
    await database.connect()
    observer = await asyncpg.connect(db_url)
    try:
        async with store_db.connection(database) as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        # The backend's last statement is still ours: no RESET ALL / UNLISTEN / CLOSE ALL after every use.
        last = await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert last == "SELECT pg_backend_pid()"
    finally:
        await observer.close()
        await database.disconnect()


async def test_a_transaction_left_open_is_rolled_back_on_release(db_url: str) -> None:
    database = store_db.database(db_url, max_size=1)
    await database.connect()
    try:
        async with store_db.connection(database) as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO server_instances (id) VALUES ('left-open')")
        async with store_db.connection(database) as conn:  # the same connection: the pool holds one
            # Were the transaction still open, this session would see its own row.
            assert await conn.fetchval("SELECT count(*) FROM server_instances WHERE id = 'left-open'") == 0
    finally:
        await database.disconnect()


async def test_a_connection_whose_session_ended_is_not_given_back(db_url: str) -> None:
    database = store_db.database(db_url, max_size=1)
    await database.connect()
    observer = await asyncpg.connect(db_url)
    try:
        async with store_db.connection(database) as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")

        async def sleep() -> None:
            async with store_db.connection(database) as conn:
                await conn.execute("SELECT pg_sleep(5)")

        sleeping = asyncio.create_task(sleep())
        running = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query = 'SELECT pg_sleep(5)'"
        async with asyncio.timeout(5):
            while not await observer.fetchval(running, first):  # noqa: ASYNC110 - PostgreSQL's view, no event
                await asyncio.sleep(0.01)
        await observer.execute("SELECT pg_terminate_backend($1)", first)  # an operator, a failover, a crash
        with pytest.raises(DatabaseUnavailable):
            await sleeping
        for _ in range(3):  # the next users get a new session, not the one left mid-protocol
            async with store_db.connection(database) as conn:
                assert await conn.fetchval("SELECT pg_backend_pid()") != first
    finally:
        await observer.close()
        await database.disconnect()
