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
