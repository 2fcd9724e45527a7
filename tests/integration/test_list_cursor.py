"""Keyset pagination (``after`` / ``next``): a walk reads every row that exists throughout it exactly once while
rows are inserted and deleted around it, a deep page is an index scan from its key (no OFFSET), bad tokens are a
clear 400, and a list without ``after`` keeps upstream's envelope."""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

import asyncpg
import databases
import httpx
import pytest

from server.services import read_ahead
from server.store import listing, resources
from server.store.rows import ResourceType
from tests.integration.test_search_plans import (  # noqa: F401
    Recording,
    _nodes,
    assert_indexed,
    conn,
    explain,
    loaded,
)

BUNDLES = "/api/maestro/v1/resource-bundles"
CONSUMERS = "/api/maestro/v1/consumers"
ROWS = 1_200


async def insert(database: databases.Database, ids: list[str], *, spread_seconds: int = 3600) -> None:
    """Bundles for cluster1 with created_at spread over the last hour (so new ones land before and after a cursor)."""
    await database.execute_many(
        "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, created_at)"
        " VALUES (:id, :name, 'src', 'cluster1', 'Bundle', 1, :payload,"
        "  now() - make_interval(secs => :ago))",
        [
            {
                "id": rid,
                "name": f"b-{rid}",
                "payload": {"metadata": {"name": rid}, "data": {"manifests": []}},
                "ago": random.uniform(0, spread_seconds),
            }
            for rid in ids
        ],
    )


@pytest.fixture
async def cluster1(client: httpx.AsyncClient) -> None:
    assert (await client.post(CONSUMERS, json={"name": "cluster1"})).status_code == 201


@pytest.mark.parametrize("order", ["", "created_at desc", "name", "id desc"])
async def test_walk_reads_each_lasting_row_once_under_writes(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None, order: str
) -> None:
    random.seed(order)
    lasting = [str(uuid.uuid4()) for _ in range(ROWS)]
    doomed = [str(uuid.uuid4()) for _ in range(300)]
    await insert(database, lasting + doomed)
    params: dict[str, Any] = {"size": 50, "after": "", "fields": "id"}
    if order:
        params["orderBy"] = order
    seen: list[str] = []
    pages = 0
    while True:
        body = (await client.get(BUNDLES, params=params)).json()
        pages += 1
        assert body["page"] == pages
        assert body["total"] == ROWS + 300  # counted on the first page, carried by the token
        seen += [item["id"] for item in body["items"]]
        if body["next"] is None:
            break
        params["after"] = body["next"]
        # Between two pages: rows appear before and after the cursor, and others go.
        await insert(database, [str(uuid.uuid4()) for _ in range(10)])
        gone = [doomed.pop() for _ in range(min(4, len(doomed)))]
        await database.execute("DELETE FROM resources WHERE id = ANY(CAST(:ids AS text[]))", {"ids": gone})
    assert pages > ROWS // 50
    assert len(seen) == len(set(seen)), "a row was read twice"
    assert set(lasting) <= set(seen), f"{len(set(lasting) - set(seen))} lasting rows were skipped"
    # The walk's order is the order asked for.
    ordered = await client.get(BUNDLES, params={"size": 65500, "fields": "id", **({"orderBy": order} if order else {})})
    everything = [item["id"] for item in ordered.json()["items"]]
    assert [rid for rid in everything if rid in set(lasting)] == [rid for rid in seen if rid in set(lasting)]


async def test_first_page_total_and_the_last_page(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None
) -> None:
    await insert(database, [str(uuid.uuid4()) for _ in range(5)])
    whole = (await client.get(BUNDLES, params={"after": "", "size": 5})).json()
    assert (whole["size"], whole["total"], whole["next"]) == (5, 5, None)
    first = (await client.get(BUNDLES, params={"after": "", "size": 3})).json()
    assert (first["page"], first["size"], first["total"]) == (1, 3, 5)
    last = (await client.get(BUNDLES, params={"after": first["next"], "size": 3})).json()
    assert (last["page"], last["size"], last["total"], last["next"]) == (2, 2, 5, None)
    assert {i["id"] for i in first["items"]} | {i["id"] for i in last["items"]} == {i["id"] for i in whole["items"]}
    searched = (await client.get(BUNDLES, params={"after": "", "search": "name = 'nothing'"})).json()
    assert (searched["items"], searched["total"], searched["next"]) == ([], 0, None)


async def test_first_page_total_counts_what_the_search_matches(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(9))
    await insert(database, ids)
    wanted = ids[:6]
    search = f"id in ({', '.join(repr(i) for i in wanted)})"
    first = (await client.get(BUNDLES, params={"after": "", "size": 4, "search": search})).json()
    assert (first["size"], first["total"]) == (4, 6)
    second = (await client.get(BUNDLES, params={"after": first["next"], "size": 4, "search": search})).json()
    assert (second["page"], second["size"], second["total"], second["next"]) == (2, 2, 6, None)
    assert {i["id"] for i in first["items"] + second["items"]} == set(wanted)
    # Past the exact limit the first page's total is an estimate, never below the rows counted.
    monkeypatch.setattr(listing, "EXACT_TOTAL_LIMIT", 3)
    estimated = (await client.get(BUNDLES, params={"after": "", "size": 2})).json()
    assert estimated["total"] >= 4
    later = (await client.get(BUNDLES, params={"after": estimated["next"], "size": 2})).json()
    assert later["total"] == estimated["total"]


async def test_pages_read_ahead_are_the_pages_a_request_reads(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await insert(database, [str(uuid.uuid4()) for _ in range(23)])

    async def walk(**params: Any) -> list[dict[str, Any]]:
        bodies, after = [], ""
        while True:
            bodies.append((await client.get(BUNDLES, params={"after": after, "size": 5, **params})).json())
            if bodies[-1]["next"] is None:
                return bodies
            after = bodies[-1]["next"]

    ahead = [await walk(), await walk(fields="id,name"), await walk(orderBy="name desc")]
    monkeypatch.setattr(read_ahead, "MAX_SIZE", 0)  # nothing read ahead: every page read by its request
    assert ahead == [await walk(), await walk(fields="id,name"), await walk(orderBy="name desc")]
    assert [len(walked) for walked in ahead] == [5, 5, 5]


async def test_a_page_read_ahead_is_served_only_while_fresh(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await insert(database, [str(uuid.uuid4()) for _ in range(12)])
    ids = [i["id"] for i in (await client.get(BUNDLES, params={"size": 12, "orderBy": "id"})).json()["items"]]

    async def second_page_after_deleting(gone: str) -> list[str]:
        first = (await client.get(BUNDLES, params={"after": "", "size": 3, "orderBy": "id"})).json()
        assert [i["id"] for i in first["items"]] == ids[:3]
        await read_ahead.of(database).settled()  # the second page has been read ahead
        await database.execute("DELETE FROM resources WHERE id = :id", {"id": gone})
        params = {"after": first["next"], "size": 3, "orderBy": "id"}
        return [i["id"] for i in (await client.get(BUNDLES, params=params)).json()["items"]]

    # Read ahead under a second before: the page as the table was then.
    assert await second_page_after_deleting(ids[4]) == ids[3:6]
    # Read ahead longer ago: the request reads it again.
    monkeypatch.setattr(read_ahead, "TTL", -1.0)
    assert await second_page_after_deleting(ids[5]) == [ids[3], ids[6], ids[7]]


async def test_without_after_the_envelope_is_upstreams(
    client: httpx.AsyncClient, database: databases.Database, cluster1: None
) -> None:
    await insert(database, [str(uuid.uuid4()) for _ in range(7)])
    for params, size in (({}, 7), ({"page": 2, "size": 3}, 3), ({"page": 3, "size": 3}, 1), ({"page": 9}, 0)):
        body = (await client.get(BUNDLES, params=params)).json()
        assert list(body) == ["kind", "page", "size", "total", "items"], params
        assert (body["size"], body["total"]) == (size, 7), params
    assert (await client.get(BUNDLES, params={"size": 0})).json()["total"] == 7


def _token(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


async def test_bad_cursors_are_400(client: httpx.AsyncClient, database: databases.Database, cluster1: None) -> None:
    await insert(database, [str(uuid.uuid4()) for _ in range(3)])
    bundle_next = (await client.get(BUNDLES, params={"after": "", "size": 1})).json()["next"]
    await client.post(CONSUMERS, json={"name": "cluster2"})
    consumer_next = (await client.get(CONSUMERS, params={"after": "", "size": 1})).json()["next"]
    by_name = (await client.get(BUNDLES, params={"after": "", "size": 1, "orderBy": "name"})).json()["next"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"after": "not a token"}, "malformed cursor"),
        ({"after": "e30"}, "malformed cursor"),  # {}
        ({"after": _token([1, "resource-bundles", "created_at,id", False, ["x", 1], 1, 1])}, "malformed cursor"),
        ({"after": _token([1, "resource-bundles", "created_at,id", False, [1, "x"], 1, 1])}, "malformed cursor"),
        ({"after": consumer_next}, "belongs to another list"),
        ({"after": by_name}, "belongs to another list"),
        ({"after": bundle_next, "orderBy": "name desc"}, "belongs to another list"),
        ({"after": "", "orderBy": "consumer_name"}, "the cursor follows orderBy created_at [asc|desc], name"),
        ({"after": "", "orderBy": "name, id"}, "the cursor follows orderBy"),
        ({"after": "", "page": 2}, "page and after cannot be combined"),
        ({"after": "", "size": 0}, "size must be 1 or more with after"),
    ]
    for params, text in cases:
        response = await client.get(BUNDLES, params=params)
        assert response.status_code == 400, (params, response.text)
        body = response.json()
        assert (body["code"], text in body["reason"]) == ("maestro-21", True), (params, body)
    assert (await client.get(BUNDLES, params={"after": bundle_next})).status_code == 200


CURSOR_ORDERS = ["", "created_at desc", "name", "name desc", "id", "id desc"]


@pytest.mark.parametrize("order", CURSOR_ORDERS)
@pytest.mark.parametrize("kind", ["Bundle", "Single"])
async def test_a_deep_cursor_page_is_an_index_scan_from_its_key(
    conn: asyncpg.Connection,  # noqa: F811
    order: str,
    kind: ResourceType,
) -> None:
    deep = 15_000 if kind == "Bundle" else 150
    skip = await resources.page(conn, listing.ListQuery(after="", size=deep, order_by=order), type=kind)
    assert skip.next is not None
    recording = Recording(conn)
    found = await resources.page(recording, listing.ListQuery(after=skip.next, size=20, order_by=order), type=kind)
    assert len(found.items) == 20
    [(query, args)] = recording.statements  # NB: no count: the total rides in the token
    assert "OFFSET" not in query
    nodes = await explain(conn, query, args)
    assert_indexed(nodes, table="resources", where=f"{order!r}: {query}")
    if kind == "Bundle":  # NB: for the 1 % of single resources, PostgreSQL may rather sort them all (200 rows).
        [limit] = [n for n in nodes if n["Node Type"] == "Limit"]
        sorts = [n for n in _nodes(limit) if "Sort" in n["Node Type"]]  # NB: above it, only the page is sorted
        assert not sorts, f"{order!r}: sorted, not read in index order: {nodes}"
