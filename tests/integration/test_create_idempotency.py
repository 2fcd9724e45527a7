"""A create is idempotent by its client-chosen id: a client that never got the answer (a dropped connection, a 503)
sends the same request again and gets the resource the first one made, never a second one."""

from __future__ import annotations

import uuid
from typing import Any

import databases
import httpx
import pytest

from tests.integration.test_rest_consumers import assert_error
from tests.integration.test_rest_resources import BUNDLES, RESOURCES, count, events, nginx


@pytest.fixture(autouse=True)
async def consumers(client: httpx.AsyncClient) -> None:
    for name in ("cluster1", "cluster2"):
        assert (await client.post("/api/maestro/v1/consumers", json={"name": name})).status_code == 201


def single(rid: str, **changes: Any) -> dict[str, Any]:
    return {"id": rid, "consumer_name": "cluster1", "manifest": nginx(), **changes}


def bundle(rid: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "consumer_name": "cluster1",
        "manifests": [nginx()],
        "metadata": {"labels": {"a": "b"}},
        **changes,
    }


@pytest.mark.parametrize(("url", "body"), [(RESOURCES, single), (BUNDLES, bundle)])
async def test_the_same_create_twice_returns_the_first(
    client: httpx.AsyncClient, database: databases.Database, url: str, body: Any
) -> None:
    rid = str(uuid.uuid4())
    first = await client.post(url, json=body(rid))
    assert first.status_code == 201, first.text
    again = await client.post(url, json=body(rid))
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await count(database, "resources") == 1
    assert await events(database, rid) == [(rid, "Create", 1)]


@pytest.mark.parametrize(
    ("url", "body", "change", "named"),
    [
        (RESOURCES, single, {"manifest": nginx(replicas=2)}, "spec"),
        (RESOURCES, single, {"consumer_name": "cluster2"}, "consumer_name"),
        (RESOURCES, single, {"name": "other"}, "name"),
        (BUNDLES, bundle, {"metadata": {"labels": {"a": "c"}}}, "spec"),
        (BUNDLES, bundle, {"manifests": [nginx(), nginx("two")]}, "spec"),
    ],
)
async def test_a_different_create_under_the_same_id_is_409(
    client: httpx.AsyncClient, database: databases.Database, url: str, body: Any, change: dict[str, Any], named: str
) -> None:
    rid = str(uuid.uuid4())
    assert (await client.post(url, json=body(rid))).status_code == 201
    reason = assert_error(await client.post(url, json=body(rid, **change)), 409, 6)["reason"]
    assert reason == f"a resource with id {rid} already exists with a different {named}"
    assert await count(database, "resources") == 1
    assert await events(database, rid) == [(rid, "Create", 1)]


async def test_a_single_resource_and_a_bundle_do_not_share_an_id(client: httpx.AsyncClient) -> None:
    rid = str(uuid.uuid4())
    assert (await client.post(RESOURCES, json=single(rid))).status_code == 201
    refused = await client.post(BUNDLES, json={"id": rid, "consumer_name": "cluster1", "manifests": [nginx()]})
    assert "already exists with a different" in assert_error(refused, 409, 6)["reason"]


async def test_a_repeat_after_an_update_or_a_delete_is_409(
    client: httpx.AsyncClient, database: databases.Database
) -> None:
    updated, deleting = str(uuid.uuid4()), str(uuid.uuid4())
    for rid in (updated, deleting):
        assert (await client.post(RESOURCES, json=single(rid))).status_code == 201
    patched = await client.patch(f"{RESOURCES}/{updated}", json={"version": 1, "manifest": nginx(replicas=3)})
    assert patched.status_code == 200, patched.text
    reason = assert_error(await client.post(RESOURCES, json=single(updated)), 409, 6)["reason"]
    assert reason.endswith("different spec (it was updated to version 2)")
    assert (await client.delete(f"{RESOURCES}/{deleting}")).status_code == 204
    reason = assert_error(await client.post(RESOURCES, json=single(deleting)), 409, 6)["reason"]
    assert reason == f"a resource with id {deleting} already exists and is being deleted"
    assert await count(database, "resources") == 2


async def test_another_resource_with_the_same_name_is_still_409(client: httpx.AsyncClient) -> None:
    assert (await client.post(RESOURCES, json=single(str(uuid.uuid4()), name="web"))).status_code == 201
    refused = await client.post(RESOURCES, json=single(str(uuid.uuid4()), name="web"))
    assert assert_error(refused, 409, 6)["reason"] == "a resource with this name already exists"
