"""A sweep's cost follows the pending events, not the log (real PostgreSQL): marking an event reconciled leaves an
entry for it in the pending index until VACUUM, and on a log without statistics (a new or fast-growing one) the
planner would read those entries with a bitmap scan, which visits the heap row of every event marked since the last
VACUUM on every sweep, and join the resources by reading all of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import databases

from server.store import db as store_db
from server.store import outbox

LOG = 3000
PENDING = 5

_LOAD = [
    "INSERT INTO consumers (id, name) VALUES ('c1', 'cluster1')",
    "INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
    " SELECT 'r' || lpad(i::text, 5, '0'), 'work-' || i, 'maestro', 'cluster1', 'Single', 1,"
    "  jsonb_build_object('data', jsonb_build_object('manifests', jsonb_build_array(jsonb_build_object("
    "   'kind', 'ConfigMap', 'data', jsonb_build_object('v', repeat('x', 800))))))"
    " FROM generate_series(1, $LOG) AS i",
    "INSERT INTO events (source_id, consumer_name, event_type, version, payload)"
    " SELECT id, consumer_name, 'Create', 1, jsonb_build_object('spec', payload) FROM resources ORDER BY id",
    # NB: as the dispatcher does, round after round; no VACUUM, no ANALYZE follows.
    "UPDATE events SET reconciled_date = now() WHERE id <= $LOG - $PENDING",
]


class Recording:
    """A connection that records the statements it runs."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Sequence[Any]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append((sql, args))
        return await self.conn.fetch(sql, *args)


async def test_a_sweep_reads_the_pending_events_and_their_rows_only(database: databases.Database) -> None:
    async with store_db.connection(database) as conn:
        for sql in _LOAD:
            await conn.execute(sql.replace("$LOG", str(LOG)).replace("$PENDING", str(PENDING)))
        recording = Recording(conn)
        for _ in range(2):  # NB: the first sweep may pay for the entries of the events marked before it; not later.
            dirty = await outbox.pending(recording, rows=100, reconcile=[1, 2])  # type: ignore[arg-type]
        assert [d.resource_id for d in dirty] == [f"r{i:05d}" for i in range(LOG - PENDING + 1, LOG + 1)]
        assert all(d.read and d.row is not None for d in dirty)
        sql, args = recording.statements[-1]
        async with conn.transaction():
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
            await conn.execute("ROLLBACK AND CHAIN")  # NB: EXPLAIN ANALYZE ran the marking; keep nothing of it.
    top = plan[0]["Plan"]
    blocks = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    assert blocks < 100, f"a sweep of {PENDING} pending events in a log of {LOG} read {blocks} blocks"


async def test_a_sweep_leaves_out_the_backlogged_consumers_without_reading_their_events(
    database: databases.Database,
) -> None:
    """A consumer whose queue already holds its oldest work is left out of the read: a backlog of 3,000 costs the
    sweep nothing, and the others (before, between and after it in name order) are read as ever."""
    names = ["a-before", "cluster1", "m-between", "zz-backlog", "zzz-after"]
    async with store_db.connection(database) as conn:
        for i, name in enumerate(names):
            await conn.execute("INSERT INTO consumers (id, name) VALUES ($1, $2)", f"c{i}", name)
        await conn.execute(
            "INSERT INTO events (source_id, consumer_name, event_type, version, payload)"
            " SELECT 'big-' || i, consumer, 'Create', 1, '{}'::jsonb"
            " FROM generate_series(1, 3000) AS i, unnest(ARRAY['cluster1', 'zz-backlog']) AS consumer"
        )
        for name in names:
            await conn.execute(
                "INSERT INTO events (source_id, consumer_name, event_type, version, payload)"
                " VALUES ('one-' || $1, $1, 'Create', 1, '{}'::jsonb)",
                name,
            )
        recording = Recording(conn)
        dirty = await outbox.pending(recording, per_consumer=10, backlogged=["zz-backlog", "cluster1"])  # type: ignore[arg-type]
        assert {d.consumer_name for d in dirty} == {"a-before", "m-between", "zzz-after"}
        assert [d.resource_id for d in dirty] == ["one-a-before", "one-m-between", "one-zzz-after"]
        sql, args = recording.statements[-1]
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        everyone = await outbox.pending(conn, per_consumer=10)
    top = plan[0]["Plan"]
    assert top["Shared Hit Blocks"] + top["Shared Read Blocks"] < 100, "the backlogs were read"
    assert {d.consumer_name for d in everyone} == set(names)
    assert sum(d.consumer_name == "cluster1" for d in everyone) == 10
