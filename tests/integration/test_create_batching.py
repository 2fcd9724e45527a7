"""Concurrent creates are written together (group commit, server/store/batching.py), and each request still gets
exactly its own row, its own ``Create`` event and the answer it would have had alone."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import databases
import httpx
import pytest

from server.services import resources as service
from server.store import db as store_db
from tests.integration.test_rest_consumers import assert_error
from tests.integration.test_rest_resources import BUNDLES, RESOURCES, nginx

SOURCE = "maestro"


@pytest.fixture(autouse=True)
async def consumers(client: httpx.AsyncClient) -> None:
    for name in ("cluster1", "cluster2"):
        assert (await client.post("/api/maestro/v1/consumers", json={"name": name})).status_code == 201


def bundle(name: str, **changes: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "consumer_name": "cluster1", "manifests": [nginx(name)], **changes}


async def creates(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """All of ``bodies`` posted at once (so all but the first arrive while a write is in flight)."""
    return list(await asyncio.gather(*(client.post(BUNDLES, json=body) for body in bodies)))


async def transactions(database: databases.Database) -> tuple[int, int]:
    """(Create events, distinct transactions that appended them)."""
    row = await database.fetch_one("SELECT count(*) AS n, count(DISTINCT xid) AS x FROM events")
    assert row is not None
    return int(row["n"]), int(row["x"])


async def test_concurrent_creates_each_get_their_own_row_event_and_answer(
    client: httpx.AsyncClient, database: databases.Database
) -> None:
    bodies = [bundle(f"work-{i}") for i in range(40)]
    answers = await creates(client, bodies)

    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 201, answer.text
        got = answer.json()
        assert (got["id"], got["name"], got["version"]) == (body["id"], body["name"], 1)
        assert got["manifests"] == body["manifests"]
    rows = await database.fetch_all("SELECT id, name, payload->'data'->'manifests' AS m FROM resources")
    assert sorted((r["id"], r["name"]) for r in rows) == sorted((b["id"], b["name"]) for b in bodies)
    events = await database.fetch_all("SELECT source_id, event_type, version, payload FROM events ORDER BY id")
    assert sorted(e["source_id"] for e in events) == sorted(b["id"] for b in bodies)
    assert {(e["event_type"], e["version"]) for e in events} == {("Create", 1)}
    # Each event carries its own row (the fact rebuild replays), written by the same actor as alone.
    stored = {a.json()["id"]: a.json() for a in answers}
    for event in events:
        fact = event["payload"]
        assert fact["name"] == stored[event["source_id"]]["name"]
        assert fact["actor"] == service.ANONYMOUS
        assert fact["spec"]["metadata"]["uid"] == event["source_id"]
    # Group commit: fewer transactions than creates.
    created, written_by = await transactions(database)
    assert created == 40
    assert written_by < created


async def test_a_batch_answers_each_request_as_the_single_path_would(
    client: httpx.AsyncClient, database: databases.Database, db_url: str
) -> None:
    stored = bundle("stored")
    assert (await client.post(BUNDLES, json=stored)).status_code == 201
    twin = bundle("twin")
    rival = bundle("rival")
    fillers = [bundle(f"filler-{i}") for i in range(20)]
    special = [
        dict(stored),  # the same create again: 200, the stored one
        {**stored, "manifests": [nginx("other")]},  # the same id, another spec: 409
        bundle("stored"),  # another id, a taken name: 409
        bundle("orphan", consumer_name="nope"),  # no such consumer: 400
        twin,
        dict(twin),  # the same create twice in one batch: one 201, one 200
        rival,
        {**rival, "id": str(uuid.uuid4())},  # the same name twice in one batch: one 201, one 409
    ]
    queued = [*fillers[1:10], *special, *fillers[10:]]
    async with cluster1_held(db_url):
        leader = asyncio.create_task(client.post(BUNDLES, json=fillers[0]))
        async with asyncio.timeout(30):
            await _waiting_on_a_lock(database, "WITH r AS")  # the leader's single-row statement
        tasks = [asyncio.create_task(client.post(BUNDLES, json=body)) for body in queued]
        async with asyncio.timeout(30):
            await _queued(database, len(queued))  # so all of them go in the one batch after the leader
    answers = [await leader, *await asyncio.gather(*tasks)]
    filler_answers, special_answers = answers[:10] + answers[-10:], answers[10:-10]

    # The fillers but the leader were written by one statement (one transaction).
    xids = "SELECT count(DISTINCT xid) FROM events WHERE source_id = ANY(:ids)"
    assert await database.fetch_val(xids, {"ids": [b["id"] for b in fillers[1:]]}) == 1
    assert all(a.status_code == 201 for a in filler_answers)
    again, other_spec, taken_name, orphan, twin1, twin2, rival1, rival2 = special_answers
    assert again.status_code == 200
    assert again.json()["id"] == stored["id"]
    reason = assert_error(other_spec, 409, 6)["reason"]
    assert reason == f"a resource with id {stored['id']} already exists with a different spec"
    assert assert_error(taken_name, 409, 6)["reason"] == "a resource with this name already exists"
    assert assert_error(orphan, 400, 8)["reason"] == "consumer_name: consumer 'nope' does not exist"
    assert sorted([twin1.status_code, twin2.status_code]) == [200, 201]
    assert twin1.json() == twin2.json()
    rivals = sorted([rival1, rival2], key=lambda a: a.status_code)
    assert rivals[0].status_code == 201
    assert assert_error(rivals[1], 409, 6)["reason"] == "a resource with this name already exists"

    # One row and one Create event per 201, nothing for the others.
    expected = 1 + 20 + 1 + 1  # stored, fillers, twin, one rival
    assert int(await database.fetch_val("SELECT count(*) FROM resources")) == expected
    assert int(await database.fetch_val("SELECT count(*) FROM events WHERE event_type = 'Create'")) == expected
    assert await database.fetch_val("SELECT count(*) FROM resources WHERE name = 'orphan'") == 0


async def test_a_single_resource_in_a_batch_of_bundles_keeps_its_type(client: httpx.AsyncClient) -> None:
    single = {"id": str(uuid.uuid4()), "name": "single", "consumer_name": "cluster1", "manifest": nginx("single")}
    answers = await asyncio.gather(
        *(client.post(BUNDLES, json=bundle(f"b-{i}")) for i in range(5)),
        client.post(RESOURCES, json=single),
        *(client.post(BUNDLES, json=bundle(f"c-{i}")) for i in range(5)),
    )
    assert [a.status_code for a in answers] == [201] * 11
    assert (await client.get(f"{RESOURCES}/{single['id']}")).json()["manifest"] == single["manifest"]
    assert (await client.get(f"{BUNDLES}/{answers[0].json()['id']}")).status_code == 200
    assert (await client.get(f"{RESOURCES}/{answers[0].json()['id']}")).status_code == 404


@contextlib.asynccontextmanager
async def cluster1_held(db_url: str) -> AsyncIterator[None]:
    """While open, creates for cluster1 wait: an insert checks its consumer under a KEY SHARE lock, which this
    FOR UPDATE (on a pool of its own) holds back."""
    holder = store_db.database(db_url, max_size=1)
    await holder.connect()
    try:
        async with store_db.transaction(holder) as lock:
            await lock.execute("SELECT FROM consumers WHERE name = 'cluster1' FOR UPDATE")
            yield
    finally:
        await holder.disconnect()


async def _waiting_on_a_lock(database: databases.Database, statement: str) -> None:
    """Until a statement starting with ``statement`` waits for a lock (behind :func:`cluster1_held`)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND starts_with(query, :statement)"
    )
    while True:
        if await database.fetch_val(query, {"statement": statement}):
            return
        await asyncio.sleep(0.01)


async def _queued(database: databases.Database, count: int) -> None:
    """Until ``count`` creates wait in ``database``'s group commit queue."""
    while service._creates(database).queued < count:  # noqa: ASYNC110 - the queue has no event to wait on
        await asyncio.sleep(0.01)


async def test_a_request_cancelled_inside_a_batch_does_not_change_the_others(
    db_url: str, database: databases.Database
) -> None:
    def create(name: str, consumer: str = "cluster1") -> Awaitable[service.Created]:
        return service.create_bundle(database, bundle(name, consumer_name=consumer), source=SOURCE)

    async with cluster1_held(db_url):
        first = asyncio.create_task(create("first", consumer="cluster2"))  # runs alone, not held back
        await asyncio.sleep(0)
        held = {name: asyncio.create_task(create(name)) for name in ("a", "b", "victim", "c")}
        assert (await first).new
        async with asyncio.timeout(30):
            await _waiting_on_a_lock(database, "WITH u AS")  # the batch of a, b, victim and c
        held["victim"].cancel()
        later = asyncio.create_task(create("later"))  # queued behind the held batch
        async with asyncio.timeout(30):
            await _queued(database, 1)
    async with asyncio.timeout(30):
        results = await asyncio.gather(*held.values(), later, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert all(isinstance(r, service.Created) and r.new for i, r in enumerate(results) if i != 2)

    # The batch ran to its end: every row it held, the victim's too, written once with its event.
    rows = await database.fetch_all("SELECT id, name FROM resources")
    assert sorted(r["name"] for r in rows) == ["a", "b", "c", "first", "later", "victim"]
    events = await database.fetch_all("SELECT source_id FROM events")
    assert sorted(e["source_id"] for e in events) == sorted(r["id"] for r in rows)


async def test_a_request_cancelled_while_queued_writes_nothing(db_url: str, database: databases.Database) -> None:
    async with cluster1_held(db_url):
        first = asyncio.create_task(service.create_bundle(database, bundle("first"), source=SOURCE))  # held back
        async with asyncio.timeout(30):
            await _waiting_on_a_lock(database, "WITH r AS")
        queued = {n: asyncio.create_task(service.create_bundle(database, bundle(n), source=SOURCE)) for n in "xyz"}
        async with asyncio.timeout(30):
            await _queued(database, 3)
        queued["y"].cancel()
    async with asyncio.timeout(30):
        results = await asyncio.gather(first, *queued.values(), return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    names = sorted(r["name"] for r in await database.fetch_all("SELECT name FROM resources"))
    assert names == ["first", "x", "z"]
    assert int(await database.fetch_val("SELECT count(*) FROM events")) == 3
