"""The dispatcher's sweep reads the first dirty resources' rows with their events, in one statement (real
PostgreSQL): a row read so reflects its events, and a resource that is gone reads as such."""

from __future__ import annotations

import databases

from server.services import consumers, resources
from server.store import db as store_db
from server.store import outbox


async def test_the_sweep_reads_the_first_rows_with_their_events(database: databases.Database) -> None:
    await consumers.create(database, {"name": "rows"})
    ids = []
    for n in range(3):
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{n}", "namespace": "ns"}}
        created = await resources.create_single(database, {"consumer_name": "rows", "manifest": manifest}, source="s")
        ids.append(created.row.id)
    async with store_db.connection(database) as conn:
        await conn.execute("UPDATE resources SET version = 2 WHERE id = $1", ids[0])
        await conn.execute("DELETE FROM resources WHERE id = $1", ids[1])
        dirty = await outbox.pending(conn, rows=2)
        unread = await outbox.pending(conn)

    assert [d.resource_id for d in dirty] == ids
    assert [d.read for d in dirty] == [True, True, False]
    first = dirty[0].row
    assert first is not None
    assert (first.id, first.version) == (ids[0], 2)
    assert dirty[1].row is None, "a resource gone reads as gone, not as unread"
    assert dirty[2].row is None
    assert [(d.read, d.row) for d in unread] == [(False, None)] * 3
    assert [d.event_ids for d in unread] == [d.event_ids for d in dirty]
