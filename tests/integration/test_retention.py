"""Retention and compaction of the event logs (issue 9, item 3): by age and by spec versions kept per resource,
never the latest version of a resource that has a row, never a pending event, never a status a watcher may still
read within the retention window — and the table can still be rebuilt from what is left.

Time is moved by back-dating rows, not by sleeping.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import databases
import httpx
import pytest

from protocol import sequence
from server.dispatch.maintenance import Maintenance
from server.services import consumers, rebuild, resources, status, watch
from server.settings import Settings
from server.store import logs
from server.store.db import transaction

pytestmark = pytest.mark.timeout(30)

HOUR = 3600.0
API = "/api/maestro/v1"
SEQ = sequence.SequenceGenerator()


def configmap(value: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "ns"},
        "data": {"v": str(value)},
    }


async def sql(database: databases.Database, query: str, *args: Any) -> list[Any]:
    async with transaction(database) as conn:
        return list(await conn.fetch(query, *args))


async def age(database: databases.Database, hours: float = 2) -> None:
    """Everything written so far happened ``hours`` ago, and was published."""
    shift = timedelta(hours=hours)
    await sql(database, "UPDATE events SET created_at = created_at - $1::interval, reconciled_date = now()", shift)
    await sql(database, "UPDATE status_events SET created_at = created_at - $1::interval", shift)


async def report(database: databases.Database, rid: str, version: int, kind: str) -> None:
    conditions = [{"type": kind, "status": "True"}]
    report = status.StatusReport("cluster1", rid, version, SEQ.next(), kind, conditions, [], "cluster1", "maestro")
    await status.accept(database, report, source_id="maestro")


async def create(database: databases.Database, value: int = 0) -> str:
    body = {"consumer_name": "cluster1", "manifest": configmap(value)}
    return (await resources.create_single(database, body, source="maestro")).row.id


async def update(database: databases.Database, rid: str, value: int) -> None:
    await resources.patch_single(database, rid, {"version": 0, "manifest": configmap(value)})


async def spec_log(database: databases.Database) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for r in await sql(database, "SELECT source_id, event_type, version FROM events ORDER BY id"):
        out.setdefault(r["source_id"], []).append((r["event_type"], r["version"]))
    return out


async def status_log(database: databases.Database) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in await sql(database, "SELECT resource_id, status FROM status_events ORDER BY id"):
        out.setdefault(r["resource_id"], []).append(r["status"]["conditions"][0]["type"])
    return out


def maintenance(database: databases.Database, **fields: Any) -> Maintenance:
    return Maintenance(database, Settings.of(**{"status_event_retention": HOUR, **fields}).maintenance)


@pytest.fixture(autouse=True)
async def cluster1(database: databases.Database) -> None:
    await consumers.create(database, {"name": "cluster1"})


async def test_age_keeps_the_latest_facts_of_every_resource_with_a_row(database: databases.Database) -> None:
    live = await create(database)
    await update(database, live, 1)
    await report(database, live, 2, "Applied")
    await report(database, live, 2, "Available")
    deleting = await create(database)
    await report(database, deleting, 1, "Applied")
    await resources.mark_deleting(database, deleting)
    gone = await create(database)
    await resources.mark_deleting(database, gone)
    await report(database, gone, 1, "Deleted")
    gone_lately = await create(database)
    await resources.mark_deleting(database, gone_lately)
    await age(database)
    await report(database, gone_lately, 1, "Deleted")  # its delete completed within the retention
    unpublished = await create(database)
    await sql(database, "UPDATE events SET created_at = now() - interval '2 hours' WHERE source_id = $1", unpublished)

    assert await maintenance(database).prune() > 0
    assert await spec_log(database) == {
        live: [("Update", 2)],
        deleting: [("Delete", 1)],
        gone_lately: [("Create", 1), ("Delete", 1), ("Deleted", 1)],
        unpublished: [("Create", 1)],
    }
    assert await status_log(database) == {live: ["Available"], deleting: ["Applied"], gone_lately: ["Deleted"]}
    assert (await rebuild.rebuild(database, apply=False)).differences == []


async def test_versions_kept_compacts_old_specs_but_not_what_a_watcher_may_read(
    database: databases.Database, client: httpx.AsyncClient
) -> None:
    rid = await create(database, 1)
    for value in range(2, 6):
        await report(database, rid, value - 1, "Applied" if value % 2 else "Available")
        await update(database, rid, value)
    await age(database, hours=0)  # published, but recent
    before = await status_log(database)

    assert await maintenance(database, event_versions_kept=2).prune() == 3
    assert await spec_log(database) == {rid: [("Update", 4), ("Update", 5)]}
    assert await status_log(database) == before  # a watcher within the retention window still reads them all
    events, _ = await watch.read(database, logs.START)
    assert [e.version for e in events] == [1, 2, 3, 4]

    history = (await client.get(f"{API}/resources/{rid}/history")).json()
    assert [i["version"] for i in history["items"]] == [4, 5]
    compacted = await client.get(f"{API}/resources/{rid}", params={"version": "2"})
    assert compacted.status_code == 404
    assert "no longer in the event log" in compacted.json()["reason"]
    assert (await rebuild.rebuild(database, apply=False)).differences == []


async def test_versions_kept_never_drops_pending_events_nor_the_only_version(database: databases.Database) -> None:
    single = await create(database)
    busy = await create(database)
    for value in range(1, 4):
        await update(database, busy, value)  # pending: not published yet
    await age(database, hours=0)
    await sql(database, "UPDATE events SET reconciled_date = NULL WHERE source_id = $1", busy)

    assert await maintenance(database, event_versions_kept=1).prune() == 0
    assert [e for e, _ in (await spec_log(database))[busy]] == ["Create", "Update", "Update", "Update"]
    assert (await spec_log(database))[single] == [("Create", 1)]
