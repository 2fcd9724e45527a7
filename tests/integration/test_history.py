"""History API: every spec version of a resource, who wrote it, when, and the statuses reported for it
(issue 9, item 2)."""

from __future__ import annotations

from typing import Any

import databases
import httpx
import pytest

from protocol import sequence
from server.services import consumers, resources, status
from server.store.db import connection

pytestmark = pytest.mark.timeout(30)

API = "/api/maestro/v1"
SEQ = sequence.SequenceGenerator()


def configmap(value: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "ns"},
        "data": {"v": str(value)},
    }


async def report(database: databases.Database, rid: str, version: int, kind: str) -> None:
    conditions = [{"type": kind, "status": "True"}]
    report = status.StatusReport("cluster1", rid, version, SEQ.next(), kind, conditions, [], "cluster1", "maestro")
    await status.accept(database, report, source_id="maestro")


@pytest.fixture
async def cluster1(database: databases.Database) -> None:
    await consumers.create(database, {"name": "cluster1"})


async def test_a_bundle_history_shows_each_version_its_writer_and_its_statuses_also_after_deletion(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None
) -> None:
    body = {"consumer_name": "cluster1", "manifests": [configmap(1)], "metadata": {"labels": {"app": "a"}}}
    rid = (await resources.create_bundle(database, body, source="maestro", actor="alice")).row.id
    await report(database, rid, 1, "Applied")
    await resources.replace_bundle(database, rid, {**body, "version": 1, "manifests": [configmap(2)]}, actor="bob")
    await report(database, rid, 2, "Applied")
    await report(database, rid, 2, "Available")
    await resources.mark_deleting(database, rid, actor="carol")
    await report(database, rid, 2, "Deleted")
    assert (await client.get(f"{API}/resource-bundles/{rid}")).status_code == 404

    response = await client.get(f"{API}/resource-bundles/{rid}/history")
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["kind"], page["id"], page["size"], "next" in page) == ("ResourceBundleHistory", rid, 4, False)
    items = page["items"]
    assert [(i["event"], i["version"], i["actor"]) for i in items] == [
        ("Create", 1, "alice"),
        ("Update", 2, "bob"),
        ("Delete", 2, "carol"),
        ("Deleted", 2, "agent:cluster1"),
    ]
    assert [i["spec"]["manifests"] for i in items[:2]] == [[configmap(1)], [configmap(2)]]
    assert items[0]["spec"]["metadata"]["labels"] == {"app": "a"}
    assert "deleted_at" in items[2]["spec"]
    assert "status" not in items[0]["spec"]
    statuses = [[(s["type"], s["status"]["conditions"][0]["type"]) for s in i["statuses"]] for i in items]
    assert statuses == [
        [("StatusUpdate", "Applied")],
        [("StatusUpdate", "Applied"), ("StatusUpdate", "Available"), ("StatusDelete", "Deleted")],
        [],
        [],
    ]
    assert items[1]["statuses"][0]["status"]["ObservedVersion"] == 2
    assert [i["time"] for i in items] == sorted(i["time"] for i in items)

    old = await client.get(f"{API}/resource-bundles/{rid}", params={"version": 1})
    assert old.status_code == 200, old.text
    assert (old.json()["version"], old.json()["manifests"]) == (1, [configmap(1)])


async def test_history_pages_by_cursor(client: httpx.AsyncClient, cluster1: None) -> None:
    created = await client.post(f"{API}/resources", json={"consumer_name": "cluster1", "manifest": configmap(0)})
    rid = created.json()["id"]
    for version in range(1, 7):
        patched = await client.patch(
            f"{API}/resources/{rid}", json={"version": version, "manifest": configmap(version)}
        )
        assert patched.status_code == 200
    whole = (await client.get(f"{API}/resources/{rid}/history")).json()
    assert [i["version"] for i in whole["items"]] == [1, 2, 3, 4, 5, 6, 7]
    assert [i["spec"]["manifest"]["data"]["v"] for i in whole["items"]] == [str(v) for v in range(7)]
    assert {i["actor"] for i in whole["items"]} == {"anonymous"}
    seen, params = [], {"size": "3"}
    while True:
        page = (await client.get(f"{API}/resources/{rid}/history", params=params)).json()
        seen += page["items"]
        assert page["size"] == len(page["items"]) <= 3
        if "next" not in page:
            break
        params = {"size": "3", "after": page["next"]}
    assert seen == whole["items"]

    for version in (1, 4, 7):
        got = await client.get(f"{API}/resources/{rid}", params={"version": str(version)})
        assert got.status_code == 200
        assert (got.json()["version"], got.json()["manifest"]) == (version, configmap(version - 1))


async def test_unknown_compacted_or_malformed_requests_say_why(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None
) -> None:
    single = (
        await client.post(f"{API}/resources", json={"consumer_name": "cluster1", "manifest": configmap(0)})
    ).json()
    rid = single["id"]
    for version in (1, 2):
        await client.patch(f"{API}/resources/{rid}", json={"version": version, "manifest": configmap(version)})
    bundle = (
        await client.post(f"{API}/resource-bundles", json={"consumer_name": "cluster1", "manifests": [configmap(0)]})
    ).json()

    async def reason(path: str, status: int, **params: str) -> str:
        response = await client.get(f"{API}{path}", params=params)
        assert response.status_code == status, response.text
        return str(response.json()["reason"])

    assert "the latest is 3" in await reason(f"/resources/{rid}", 404, version="4")
    assert "has no history" in await reason("/resources/0f0f0f0f-0000-4000-8000-000000000000/history", 404)
    assert "has no history" in await reason(f"/resources/{bundle['id']}/history", 404)
    assert "version must be an integer from 1" in await reason(f"/resources/{rid}", 400, version="0")
    assert "version must be" in await reason(f"/resource-bundles/{rid}", 400, version="x")
    assert "after must be" in await reason(f"/resources/{rid}/history", 400, after="-1")
    assert "size must be an integer from 1 to 100" in await reason(f"/resources/{rid}/history", 400, size="101")

    async with connection(database) as conn:  # as compaction leaves it: the latest version only
        await conn.execute("DELETE FROM events WHERE source_id = $1 AND version < 3", rid)
    assert "no longer in the event log" in await reason(f"/resources/{rid}", 404, version="1")
    history = (await client.get(f"{API}/resources/{rid}/history")).json()
    assert [i["version"] for i in history["items"]] == [3]
    # The current row is still served as before.
    assert (await client.get(f"{API}/resources/{rid}")).json()["version"] == 3
