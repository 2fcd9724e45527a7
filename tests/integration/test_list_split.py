"""A large page is read in two halves at once on two connections sharing one snapshot: the answer is the one a
single statement gives (same rows, order, total, no row twice or missing while rows are written meanwhile), and a
pool with no connection to spare still answers (the reader reads both halves itself)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import databases
import httpx
import pytest

from server.store import db as store_db
from server.store import listing, resources

BUNDLES = "/api/maestro/v1/resource-bundles"
CONSUMERS = "/api/maestro/v1/consumers"
ROWS = 2_400


async def insert(database: databases.Database, count: int, *, prefix: str = "b") -> list[str]:
    """Bundles of cluster1 whose created_at come in ties of 10 (so an order by created_at alone is not total)."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    await database.execute_many(
        "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, created_at)"
        " VALUES (:id, :name, 'src', 'cluster1', 'Bundle', 1, :payload,"
        "  timestamptz '2026-01-01' + make_interval(secs => :second))",
        [
            {
                "id": rid,
                "name": f"{prefix}-{rid}",
                "payload": {"metadata": {"name": rid}, "data": {"manifests": [{"kind": "ConfigMap"}]}},
                "second": n // 10,
            }
            for n, rid in enumerate(ids)
        ],
    )
    return ids


@pytest.fixture
async def loaded(client: httpx.AsyncClient, database: databases.Database) -> list[str]:
    assert (await client.post(CONSUMERS, json={"name": "cluster1"})).status_code == 201
    return await insert(database, ROWS)


@pytest.fixture
def splits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of helper statements started per list call (a page that was split started one)."""
    started: list[int] = []
    real = store_db.Helper.fetch

    def counted(self: store_db.Helper, query: str, *args: Any) -> store_db.Part:
        started.append(1)
        return real(self, query, *args)

    monkeypatch.setattr(store_db.Helper, "fetch", counted)
    return started


async def read_all(client: httpx.AsyncClient, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list: one page by page/size, or every page of a cursor walk."""
    items: list[dict[str, Any]] = []
    response = await client.get(BUNDLES, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    items += body["items"]
    while body.get("next"):
        response = await client.get(BUNDLES, params={**params, "after": body["next"]})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
    return items, body["total"]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"size": ROWS}, "created_at"),
        ({"size": 1500, "page": 2}, "created_at"),
        ({"size": ROWS, "orderBy": "created_at desc"}, "created_at"),  # ties: only the halves' tie-break keeps it
        ({"size": 2000, "orderBy": "name"}, "name"),
        ({"size": ROWS, "orderBy": "version"}, "version"),  # all tied: the halves sort them as one order only by id
        ({"size": ROWS, "fields": "id,name"}, None),
        ({"size": ROWS, "search": "name like 'b-%'"}, "created_at"),
        ({"after": "", "size": 1100}, "created_at"),
        ({"after": "", "size": 1000, "orderBy": "name desc"}, "name"),
    ],
)
async def test_large_page_split_answers_as_one_statement(
    client: httpx.AsyncClient,
    loaded: list[str],
    splits: list[int],
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
    key: str | None,
) -> None:
    split_items, split_total = await read_all(client, params)
    assert splits, "the page was not split"
    monkeypatch.setattr(listing, "SPLIT_MIN", 10**9)
    whole_items, whole_total = await read_all(client, params)

    assert split_total == whole_total
    ids = [item["id"] for item in split_items]
    assert len(ids) == len(set(ids)), "a row read twice"
    assert set(ids) == {item["id"] for item in whole_items}
    if key is not None:
        keys = [item[key] for item in split_items]
        descending = "desc" in params.get("orderBy", "")
        assert keys == sorted(keys, reverse=descending)
    if params.get("orderBy", "") in ("", "name"):  # NB: a total order: the very same sequence
        assert split_items == whole_items


async def test_split_page_reads_one_snapshot_under_writes(
    client: httpx.AsyncClient, database: databases.Database, loaded: list[str], splits: list[int]
) -> None:
    """While rows are created and deleted, every full list is one state of the table: its total is its item count
    and no row appears twice (two halves reading different states would miss or repeat rows at their seam)."""
    stop = asyncio.Event()
    live = list(loaded)

    async def writer() -> None:
        while not stop.is_set():
            live.extend(await insert(database, 20, prefix="w"))
            gone = random.sample(live, 20)
            await database.execute("DELETE FROM resources WHERE id = ANY(:ids)", {"ids": gone})
            for rid in gone:
                live.remove(rid)
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    try:
        for _ in range(15):
            response = await client.get(BUNDLES, params={"size": ROWS + 1000})
            body = response.json()
            ids = [item["id"] for item in body["items"]]
            assert len(ids) == len(set(ids)), "a row read twice"
            assert body["total"] == len(ids)
    finally:
        stop.set()
        await task
    assert len(splits) == 15


async def test_helper_reads_the_exported_snapshot(database: databases.Database, loaded: list[str]) -> None:
    async with store_db.snapshot(database) as (conn, helper):
        before = await conn.fetchval("SELECT count(*) FROM resources")
        # NB: in a task of its own: on another connection (this task's is the snapshot's), committed after it.
        await asyncio.create_task(insert(database, 5, prefix="later"))
        rows = await helper.fetch("SELECT count(*) FROM resources").rows()
    assert rows is not None
    assert rows[0][0] == before == ROWS
    assert await database.fetch_val("SELECT count(*) FROM resources") == ROWS + 5


async def test_busy_pool_reads_both_halves_itself(db_url: str, loaded: list[str], splits: list[int]) -> None:
    """A pool of one connection: the helper never gets one, the reader does not wait for it (no deadlock)."""
    small = store_db.database(db_url, max_size=1)
    await small.connect()
    try:
        async with asyncio.timeout(30), store_db.snapshot(small) as (conn, helper):
            found = await resources.page_json(conn, listing.ListQuery(size=ROWS), type="Bundle", helper=helper)
    finally:
        await small.disconnect()
    assert splits
    assert len(found.items) == len(set(found.items)) == ROWS
    assert found.total == ROWS
