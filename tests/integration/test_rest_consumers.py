"""``/consumers``: create, list (paging, search, orderBy, fields), get, PATCH labels, DELETE."""

from __future__ import annotations

from typing import Any

import databases
import httpx
import pytest

from tests.integration.test_walkthrough import NGINX

CONSUMERS = "/api/maestro/v1/consumers"


def assert_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The upstream error body, with the operation id echoed in the header."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"kind", "id", "href", "code", "reason", "operation_id"}
    assert body["kind"] == "Error"
    assert body["id"] == str(code)
    assert body["href"] == f"/api/maestro/v1/errors/{code}"
    assert body["code"] == f"maestro-{code}"
    assert isinstance(body["reason"], str)
    assert body["reason"]
    assert body["operation_id"] == response.headers["X-Operation-ID"]
    return body


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(CONSUMERS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def names(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get(CONSUMERS, params=params)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


# -- create ------------------------------------------------------------------------------------------


async def test_create_with_name_and_labels(client: httpx.AsyncClient) -> None:
    created = await create(client, name="cluster1", labels={"env": "prod"})
    assert created["name"] == "cluster1"
    assert created["labels"] == {"env": "prod"}
    assert created["kind"] == "Consumer"
    got = await client.get(created["href"])
    assert got.status_code == 200
    assert got.json() == created


async def test_create_without_name_defaults_to_id(client: httpx.AsyncClient) -> None:
    created = await create(client)
    assert created["name"] == created["id"]
    assert "labels" not in created


async def test_create_with_id_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(CONSUMERS, json={"id": "8b8b0a0c-7d1e-4b1a-9c57-2f0f9e0e0e0e", "name": "c"})
    body = assert_error(response, 400, 8)
    assert "id must be empty" in body["reason"]


@pytest.mark.parametrize(
    "name", ["Cluster1", "cluster_1", "-cluster", "cluster-", "a" * 64, "clu ster", "cluster.one", "\uff43luster"]
)
async def test_create_with_bad_name_is_400(client: httpx.AsyncClient, name: str) -> None:
    body = assert_error(await client.post(CONSUMERS, json={"name": name}), 400, 8)
    assert "RFC 1123" in body["reason"]
    assert (await client.get(CONSUMERS)).json()["total"] == 0


async def test_create_duplicate_is_409(client: httpx.AsyncClient) -> None:
    await create(client, name="cluster1")
    body = assert_error(await client.post(CONSUMERS, json={"name": "cluster1"}), 409, 6)
    assert "cluster1" in body["reason"]
    assert (await client.get(CONSUMERS)).json()["total"] == 1


async def test_create_lists_every_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(CONSUMERS, json={"id": "x", "name": "Bad", "labels": {"k": 1}, "extra": True})
    reason = assert_error(response, 400, 8)["reason"]
    for text in ("id must be empty", "RFC 1123", "invalid value for label 'k'", "unknown field 'extra'"):
        assert text in reason


# -- list --------------------------------------------------------------------------------------------


@pytest.fixture
async def five(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    labels = [
        {"env": "prod", "region": "eu"},
        {"env": "prod", "region": "us"},
        {"env": "dev", "region": "eu"},
        {"env": "dev"},
        None,
    ]
    return [
        await create(client, name=f"c{i}", **({"labels": lab} if lab else {})) for i, lab in enumerate(labels, start=1)
    ]


async def test_list_paging(client: httpx.AsyncClient, five: list[dict[str, Any]]) -> None:
    first = (await client.get(CONSUMERS, params={"size": 2, "orderBy": "name"})).json()
    assert (first["kind"], first["page"], first["size"], first["total"]) == ("ConsumerList", 1, 2, 5)
    assert [c["name"] for c in first["items"]] == ["c1", "c2"]
    third = (await client.get(CONSUMERS, params={"size": 2, "page": 3, "orderBy": "name"})).json()
    assert (third["page"], third["size"], third["total"]) == (3, 1, 5)
    assert [c["name"] for c in third["items"]] == ["c5"]
    beyond = (await client.get(CONSUMERS, params={"size": 2, "page": 9})).json()
    assert (beyond["size"], beyond["total"], beyond["items"]) == (0, 5, [])
    # Without orderBy the order is still stable: creation order.
    assert await names(client) == ["c1", "c2", "c3", "c4", "c5"]
    assert (await client.get(CONSUMERS)).json()["items"] == five


async def test_list_size_zero_returns_total_only(client: httpx.AsyncClient, five: list[dict[str, Any]]) -> None:
    body = (await client.get(CONSUMERS, params={"size": 0})).json()
    assert body == {"kind": "ConsumerList", "page": 1, "size": 0, "total": 5, "items": []}


@pytest.mark.parametrize("size", ["-1", "-100", "65501", "999999999"])
async def test_list_size_is_clamped(client: httpx.AsyncClient, five: list[dict[str, Any]], size: str) -> None:
    body = (await client.get(CONSUMERS, params={"size": size})).json()
    assert (body["size"], body["total"]) == (5, 5)


@pytest.mark.parametrize(("params", "code"), [({"page": "0"}, 21), ({"page": "x"}, 21), ({"size": "1.5"}, 21)])
async def test_list_bad_paging_is_400(client: httpx.AsyncClient, params: dict[str, str], code: int) -> None:
    assert_error(await client.get(CONSUMERS, params=params), 400, code)


async def test_list_order_by(client: httpx.AsyncClient, five: list[dict[str, Any]]) -> None:
    assert await names(client, orderBy="name desc") == ["c5", "c4", "c3", "c2", "c1"]
    assert await names(client, orderBy="name asc") == ["c1", "c2", "c3", "c4", "c5"]
    assert await names(client, orderBy="created_at desc, name") == ["c5", "c4", "c3", "c2", "c1"]
    for bad in ("nope", "name sideways", "name desc desc", "labels", "name;drop table consumers"):
        body = assert_error(await client.get(CONSUMERS, params={"orderBy": bad}), 400, 21)
        assert "bad order value" in body["reason"]


async def test_list_fields_projection(client: httpx.AsyncClient, five: list[dict[str, Any]]) -> None:
    body = (await client.get(CONSUMERS, params={"fields": "name", "orderBy": "name", "size": 2})).json()
    assert body["items"] == [{"id": five[0]["id"], "name": "c1"}, {"id": five[1]["id"], "name": "c2"}]
    body = (await client.get(CONSUMERS, params={"fields": "labels.env,id", "search": "name = 'c1'"})).json()
    assert body["items"] == [{"id": five[0]["id"], "labels": {"env": "prod"}}]
    body = (await client.get(CONSUMERS, params={"fields": "labels.*", "search": "name = 'c3'"})).json()
    assert body["items"] == [{"id": five[2]["id"], "labels": {"env": "dev", "region": "eu"}}]
    reason = assert_error(await client.get(CONSUMERS, params={"fields": "name,colour"}), 400, 21)["reason"]
    assert "colour" in reason


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("name = 'c2'", ["c2"]),
        ("name <> 'c2'", ["c1", "c3", "c4", "c5"]),
        ("name like 'c%'", ["c1", "c2", "c3", "c4", "c5"]),
        ("name like '%3'", ["c3"]),
        ("name in ('c1', 'c4', 'zz')", ["c1", "c4"]),
        ("name not in ('c1', 'c4')", ["c2", "c3", "c5"]),
        ("not name = 'c1'", ["c2", "c3", "c4", "c5"]),
        ("labels.env = 'prod'", ["c1", "c2"]),
        ("labels->>'env' = 'dev'", ["c3", "c4"]),
        ('labels @> \'{"env": "prod", "region": "eu"}\'', ["c1"]),
        ("labels.region = 'eu' and labels.env = 'dev'", ["c3"]),
        ("(labels.env = 'dev' or name = 'c1') and not (name = 'c3')", ["c1", "c4"]),
        # NB: SQL three-valued logic, as upstream: a missing label is neither equal nor unequal.
        ("not (labels.region = 'eu')", ["c2"]),
        ("labels is null", ["c5"]),
        ("name = 'c1' or (name = 'c2' and labels.region = 'us')", ["c1", "c2"]),
        ("name = 'nope'", []),
    ],
)
async def test_list_search(
    client: httpx.AsyncClient, five: list[dict[str, Any]], search: str, expected: list[str]
) -> None:
    body = (await client.get(CONSUMERS, params={"search": search, "orderBy": "name"})).json()
    assert [c["name"] for c in body["items"]] == expected
    assert body["total"] == len(expected)


@pytest.mark.parametrize("search", ["name =", "name = 'x' and", "colour = 'red'", "(name = 'x'", "name ~ 'x'"])
async def test_list_bad_search_is_400(client: httpx.AsyncClient, search: str) -> None:
    reason = assert_error(await client.get(CONSUMERS, params={"search": search}), 400, 23)["reason"]
    assert reason.startswith("Failed to parse search query")


# -- get, patch --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cid", ["8b8b0a0c-7d1e-4b1a-9c57-2f0f9e0e0e0e", "not-a-uuid", "%27%20or%20%271%27=%271"])
async def test_get_unknown_is_404(client: httpx.AsyncClient, cid: str) -> None:
    body = assert_error(await client.get(f"{CONSUMERS}/{cid}"), 404, 7)
    assert "not found" in body["reason"]


async def test_get_by_name_is_404(client: httpx.AsyncClient) -> None:
    await create(client, name="cluster1")
    assert_error(await client.get(f"{CONSUMERS}/cluster1"), 404, 7)


async def test_patch_labels_replaces_and_clears(client: httpx.AsyncClient) -> None:
    created = await create(client, name="cluster1", labels={"env": "prod", "tier": "gold"})
    patched = await client.patch(created["href"], json={"labels": {"env": "dev"}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["labels"] == {"env": "dev"}
    assert body["name"] == "cluster1"
    assert body["created_at"] == created["created_at"]
    assert body["updated_at"] >= created["updated_at"]
    assert (await client.get(created["href"])).json() == body

    cleared = await client.patch(created["href"], json={})
    assert cleared.status_code == 200
    assert "labels" not in cleared.json()
    assert "labels" not in (await client.get(created["href"])).json()
    assert (await client.get(CONSUMERS, params={"search": "labels is null"})).json()["total"] == 1


@pytest.mark.parametrize(
    "body",
    [{"name": "renamed"}, {"id": "x"}, {"labels": {"env": "prod"}, "colour": "red"}, {"labels": ["a"]}],
)
async def test_patch_refuses_other_fields(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    created = await create(client, name="cluster1", labels={"env": "prod"})
    assert_error(await client.patch(created["href"], json=body), 400, 8)
    assert (await client.get(created["href"])).json() == created


async def test_patch_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"{CONSUMERS}/8b8b0a0c-7d1e-4b1a-9c57-2f0f9e0e0e0e", json={"labels": {}})
    assert_error(response, 404, 7)


# -- delete ------------------------------------------------------------------------------------------


async def test_delete(client: httpx.AsyncClient) -> None:
    created = await create(client, name="cluster1")
    deleted = await client.delete(created["href"])
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(await client.get(created["href"]), 404, 7)
    assert_error(await client.delete(created["href"]), 404, 7)
    # The name is free again.
    await create(client, name="cluster1")


async def test_delete_refused_while_resources_reference_it(
    client: httpx.AsyncClient, database: databases.Database
) -> None:
    consumer = await create(client, name="cluster1")
    posted = await client.post("/api/maestro/v1/resources", json={"consumer_name": "cluster1", "manifest": NGINX})
    assert posted.status_code == 201
    resource = posted.json()

    body = assert_error(await client.delete(consumer["href"]), 403, 4)
    assert "referenced" in body["reason"]

    # A soft-deleted resource still references it until its agent confirms the delete.
    assert (await client.delete(resource["href"])).status_code == 204
    assert "deleted_at" in (await client.get(resource["href"])).json()
    assert_error(await client.delete(consumer["href"]), 403, 4)
    assert (await client.get(consumer["href"])).status_code == 200

    # Once the agent has confirmed (the status path hard-deletes the row), the consumer can go.
    await database.execute("DELETE FROM resources WHERE id = :id", {"id": resource["id"]})
    assert (await client.delete(consumer["href"])).status_code == 204
