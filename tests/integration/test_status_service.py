"""The status use cases (``server.services.status``) against PostgreSQL: every reason a status is refused leaves
everything as it was, an accepted status is stored once per status, and a delete completes the same way whether the
agent confirmed it or maintenance retired it (issue 9, item 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import databases
import pytest

from protocol import sequence, statushash
from server.dispatch.maintenance import Maintenance
from server.dsn import plain
from server.services import consumers, rebuild, resources, status
from server.services.status import Rejected, StatusReport
from server.settings import MaintenanceSettings
from server.store.db import connection, transaction

pytestmark = pytest.mark.timeout(30)

SOURCE = "maestro"
SEQ = sequence.SequenceGenerator()
APPLIED = [{"type": "Applied", "status": "True", "reason": "AppliedManifestComplete"}]
AVAILABLE = [*APPLIED, {"type": "Available", "status": "True", "reason": "ResourcesAvailable"}]
DELETED = [{"type": "Deleted", "status": "True", "reason": "ManifestsDeleted"}]
MANIFEST_STATUS = [{"resourceMeta": {"name": "cm"}, "conditions": [], "statusFeedback": {"values": []}}]


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": value},
    }


def report(rid: str, conditions: list[dict[str, Any]], *, version: int = 1, consumer: str = "east") -> StatusReport:
    return StatusReport(
        consumer=consumer,
        resource_id=rid,
        version=version,
        sequence_id=SEQ.next(),
        status_hash=statushash.status_hash({"conditions": conditions, "resourceStatus": MANIFEST_STATUS}),
        conditions=conditions,
        resource_status=MANIFEST_STATUS,
        cluster_name=consumer,
        original_source=SOURCE,
    )


async def create(database: databases.Database, name: str, consumer: str = "east") -> str:
    body = {"consumer_name": consumer, "manifest": configmap(name)}
    return (await resources.create_single(database, body, source=SOURCE)).row.id


async def snapshot(database: databases.Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of the resource table and of both logs."""
    async with connection(database) as conn:
        return {
            table: [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY id")]
            for table in ("resources", "events", "status_events")
        }


class Notifications:
    """The ``status_events`` NOTIFYs, read up to an explicit barrier (no sleeps)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def _on(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.queue.put_nowait(payload)

    async def until_barrier(self) -> list[str]:
        """The payloads that arrived before a barrier sent now (NOTIFYs are delivered in commit order)."""
        await self.conn.execute("SELECT pg_notify('status_events', 'barrier')")
        seen = []
        while (payload := await self.queue.get()) != "barrier":
            seen.append(payload)
        return seen


@pytest.fixture
async def notified(db_url: str) -> AsyncIterator[Notifications]:
    conn = await asyncpg.connect(plain(db_url))
    listener = Notifications(conn)
    await conn.add_listener("status_events", listener._on)
    try:
        yield listener
    finally:
        await conn.close()


@pytest.fixture
async def east(database: databases.Database) -> None:
    await consumers.create(database, {"name": "east"})
    await consumers.create(database, {"name": "west"})


async def test_every_refused_status_changes_nothing_and_says_why(
    database: databases.Database, east: None, notified: Notifications
) -> None:
    rid = await create(database, "cm")
    await resources.patch_single(database, rid, {"version": 1, "manifest": configmap("cm", "2")})
    stored = report(rid, APPLIED, version=2)
    assert await status.accept(database, stored, source_id=SOURCE) == "update"
    await notified.until_barrier()
    before = await snapshot(database)

    refused = [
        ("consumer_mismatch", replace(report(rid, AVAILABLE, version=2), cluster_name="west")),
        ("foreign_source", replace(report(rid, AVAILABLE, version=2), original_source="someone-else")),
        ("unknown_resource", report("no-such-id", AVAILABLE, version=2)),
        ("wrong_consumer", report(rid, AVAILABLE, version=2, consumer="west")),
        ("stale_version", report(rid, AVAILABLE, version=1)),
        ("stale_version", report(rid, AVAILABLE, version=3)),
        ("stale_sequence", replace(report(rid, AVAILABLE, version=2), sequence_id=stored.sequence_id)),
        ("unchanged", report(rid, APPLIED, version=2)),
    ]
    for reason, refused_report in refused:
        with pytest.raises(Rejected) as caught:
            await status.accept(database, refused_report, source_id=SOURCE)
        assert caught.value.reason == reason

    assert await snapshot(database) == before
    assert await notified.until_barrier() == []


async def test_an_accepted_status_is_the_row_one_status_event_and_its_notify(
    database: databases.Database, east: None, notified: Notifications
) -> None:
    rid = await create(database, "cm")
    first, available, back = report(rid, APPLIED), report(rid, AVAILABLE), report(rid, APPLIED)
    assert await status.accept(database, first, source_id=SOURCE) == "update"
    assert await status.accept(database, available, source_id=SOURCE) == "update"
    with pytest.raises(Rejected, match="unchanged"):
        await status.accept(database, report(rid, AVAILABLE), source_id=SOURCE)
    assert await status.accept(database, back, source_id=SOURCE) == "update"  # a change back is a change
    # The same status for the next version is news: the agent has applied the update.
    await resources.patch_single(database, rid, {"version": 1, "manifest": configmap("cm", "2")})
    latest = report(rid, APPLIED, version=2)
    assert await status.accept(database, latest, source_id=SOURCE) == "update"

    state = await snapshot(database)
    assert [r["status"] for r in state["resources"]] == [latest.stored()]
    assert [(e["status_event_type"], e["version"], e["status"]) for e in state["status_events"]] == [
        ("StatusUpdate", 1, first.stored()),
        ("StatusUpdate", 1, available.stored()),
        ("StatusUpdate", 1, back.stored()),
        ("StatusUpdate", 2, latest.stored()),
    ]
    assert await notified.until_barrier() == [str(e["id"]) for e in state["status_events"]]


async def test_a_delete_completes_alike_whether_the_agent_confirms_it_or_maintenance_retires_it(
    database: databases.Database, east: None, notified: Notifications
) -> None:
    confirmed = await create(database, "confirmed")
    retired = await create(database, "retired")
    for rid in (confirmed, retired):
        await status.accept(database, report(rid, APPLIED), source_id=SOURCE)
        await resources.mark_deleting(database, rid, actor="alice")
    async with transaction(database) as conn:  # both deletes were published; both were re-published since
        await conn.execute("UPDATE events SET reconciled_date = now()")
        await conn.execute(
            "INSERT INTO events (source_id, consumer_name, event_type, version)"
            " SELECT id, consumer_name, 'Delete', version FROM resources"
        )
        await conn.execute("UPDATE resources SET deleted_at = deleted_at - interval '2 hours'")
    await notified.until_barrier()
    before = await snapshot(database)

    # An older sequence id and an older version do not stop a Deleted=True: the delete is what the hub asked for.
    agent = replace(report(confirmed, DELETED), sequence_id="1")
    assert await status.accept(database, agent, source_id=SOURCE) == "delete"
    assert (
        await Maintenance(database, MaintenanceSettings(stale_delete_event_threshold=3600)).retire_stale_deletes() == 1
    )

    after = await snapshot(database)
    assert after["resources"] == []
    assert [e for e in after["events"] if e["reconciled_date"] is None] == []
    new_status = [e for e in after["status_events"] if e["id"] > before["status_events"][-1]["id"]]
    new_spec = [e for e in after["events"] if e["id"] > before["events"][-1]["id"]]
    rows = {r["id"]: r for r in before["resources"]}
    for rid, actor in ((confirmed, "agent:east"), (retired, status.RETIRED_BY)):
        [completed] = [e for e in new_status if e["resource_id"] == rid]
        assert (completed["status_event_type"], completed["version"], completed["consumer_name"]) == (
            "StatusDelete",
            1,
            "east",
        )
        assert (completed["resource_source"], completed["resource_type"]) == (SOURCE, "Single")
        assert completed["payload"] == rows[rid]["payload"]
        [fact] = [e for e in new_spec if e["source_id"] == rid]
        assert (fact["event_type"], fact["version"], fact["payload"]["actor"]) == ("Deleted", 1, actor)
        assert fact["payload"]["spec"] == rows[rid]["payload"]
        assert fact["reconciled_date"] is not None
    by_id = {e["resource_id"]: e["status"] for e in new_status}
    assert by_id[confirmed] == agent.stored()
    retirement = by_id[retired]
    assert [(c["type"], c["status"], c["reason"]) for c in retirement["conditions"]] == [
        ("Deleted", "Unknown", "DeleteRetired")
    ]
    # What the agent last said stays (its version, sequence id, manifests), with the hash of what is stored.
    last = rows[retired]["status"]
    assert (retirement["ObservedVersion"], retirement["SequenceID"]) == (last["ObservedVersion"], last["SequenceID"])
    assert retirement["resourceStatus"] == MANIFEST_STATUS
    assert retirement["StatusHash"] == statushash.status_hash(
        {"conditions": retirement["conditions"], "resourceStatus": retirement["resourceStatus"]}
    )
    assert await notified.until_barrier() == [str(e["id"]) for e in new_status]
    assert (await rebuild.rebuild(database, apply=False)).differences == []


async def test_only_a_deleting_resource_is_retired(database: databases.Database, east: None) -> None:
    live = await create(database, "live")
    before = await snapshot(database)
    assert not await status.retire_delete(database, live, waited=0)
    assert not await status.retire_delete(database, "no-such-id", waited=0)
    assert await snapshot(database) == before

    await resources.mark_deleting(database, live)
    assert await status.retire_delete(database, live, waited=0)
    assert not await status.retire_delete(database, live, waited=0)  # NB: already gone
    with pytest.raises(Rejected, match="does not exist"):
        await status.accept(database, report(live, DELETED), source_id=SOURCE)  # the agent confirms too late
