"""Store an agent's status the way the ingest path does, for tests of what reads statuses (watch, Subscribe)."""

from __future__ import annotations

import databases

from server.store import logs, resources
from server.store import status as store_status
from server.store.db import transaction


async def report(db: databases.Database, rid: str, sequence: str, *, deleted: bool = False) -> None:
    """One transaction: ``resources.status`` + a StatusUpdate event, or (``deleted``) a StatusDelete event carrying
    the spec + the hard delete. The stored hash is ``h<sequence>``."""
    async with transaction(db) as conn:
        row = await resources.get(conn, rid)
        assert row is not None
        status = {
            "ObservedVersion": row.version,
            "SequenceID": sequence,
            "StatusHash": f"h{sequence}",
            "conditions": [{"type": "Deleted" if deleted else "Applied", "status": "True"}],
            "resourceStatus": [],
        }
        if deleted:
            await store_status.complete_delete(conn, rid, status, actor=None)
            return
        await resources.set_status(conn, rid, status)
        await logs.append_status_event(
            conn,
            resource_id=rid,
            resource_source=row.source,
            resource_type=row.type,
            consumer_name=row.consumer_name,
            event_type="StatusUpdate",
            version=row.version,
            status=status,
        )
