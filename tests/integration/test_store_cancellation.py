"""Cancelling work mid-transaction (a client hanging up, a shutdown) never leaks a pooled connection."""

from __future__ import annotations

import asyncio
import random

from server.store import db as store_db


async def test_cancelled_transactions_give_their_connections_back(db_url: str) -> None:
    database = store_db.database(db_url, max_size=2)
    await database.connect()
    rng = random.Random(7)

    async def work() -> None:
        async with store_db.transaction(database) as conn:
            await conn.execute("SELECT pg_sleep(0.02)")
            await conn.execute(
                "INSERT INTO server_instances (id) VALUES ($1) ON CONFLICT DO NOTHING", f"i{rng.random()}"
            )

    for _ in range(60):
        task = asyncio.create_task(work())
        await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.001, 0.005, 0.01, 0.03]))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # Every connection is back: more transactions than the pool holds still run, and disconnect returns.
    async with asyncio.timeout(10):
        await asyncio.gather(*(work() for _ in range(6)))
        async with store_db.connection(database) as conn:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
                    " AND datname = current_database()"
                )
                == 0
            )
        await database.disconnect()
