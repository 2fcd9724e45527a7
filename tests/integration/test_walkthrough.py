"""The README walkthrough, as a user runs it: create a consumer, post the nginx Deployment, list, get."""

from __future__ import annotations

import re

import httpx

NGINX = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"image": "nginxinc/nginx-unprivileged", "name": "nginx"}]},
        },
    },
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_readme_walkthrough(client: httpx.AsyncClient) -> None:
    empty = await client.get("/api/maestro/v1/consumers")
    assert empty.status_code == 200
    assert empty.json() == {"items": [], "kind": "ConsumerList", "page": 1, "size": 0, "total": 0}

    created = await client.post("/api/maestro/v1/consumers", json={"name": "cluster1"})
    assert created.status_code == 201
    consumer = created.json()
    assert set(consumer) == {"created_at", "href", "id", "kind", "name", "updated_at"}
    assert UUID.match(consumer["id"])
    assert consumer["kind"] == "Consumer"
    assert consumer["name"] == "cluster1"
    assert consumer["href"] == f"/api/maestro/v1/consumers/{consumer['id']}"
    assert TIME.match(consumer["created_at"])

    empty_resources = await client.get("/api/maestro/v1/resources")
    assert empty_resources.json() == {"items": [], "kind": "ResourceList", "page": 1, "size": 0, "total": 0}

    posted = await client.post(
        "/api/maestro/v1/resources", json={"consumer_name": "cluster1", "version": 1, "manifest": NGINX}
    )
    assert posted.status_code == 201, posted.text
    resource = posted.json()
    assert resource["kind"] == "Resource"
    assert resource["consumer_name"] == "cluster1"
    assert resource["version"] == 1
    assert resource["manifest"] == NGINX
    assert resource["href"] == f"/api/maestro/v1/resources/{resource['id']}"
    assert resource["update_strategy"] == {"type": "ServerSideApply"}
    assert resource["delete_option"] == {"propagationPolicy": "Foreground"}
    assert "status" not in resource  # no agent has reported yet
    assert "deleted_at" not in resource

    listed = (await client.get("/api/maestro/v1/resources")).json()
    assert listed["kind"] == "ResourceList"
    assert (listed["page"], listed["size"], listed["total"]) == (1, 1, 1)
    assert listed["items"] == [resource]

    got = await client.get(f"/api/maestro/v1/resources/{resource['id']}")
    assert got.status_code == 200
    assert got.json() == resource

    bundles = (await client.get("/api/maestro/v1/resource-bundles")).json()
    assert (bundles["kind"], bundles["total"], bundles["items"]) == ("ResourceBundleList", 0, [])
    as_bundle = (await client.get(f"/api/maestro/v1/resource-bundles/{resource['id']}")).json()
    assert as_bundle["manifests"] == [NGINX]
    assert as_bundle["metadata"]["namespace"] == "cluster1"


async def test_api_metadata_and_unknown_paths(client: httpx.AsyncClient) -> None:
    api = (await client.get("/api/maestro")).json()
    assert api["kind"] == "API"
    assert api["versions"][0]["href"] == "/api/maestro/v1"
    missing = await client.get("/api/maestro/v1/nothing-here", headers={"X-Operation-ID": "op-123"})
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Error",
        "id": "7",
        "href": "/api/maestro/v1/errors/7",
        "code": "maestro-7",
        "reason": "The requested resource '/api/maestro/v1/nothing-here' doesn't exist",
        "operation_id": "op-123",
    }
    assert missing.headers["X-Operation-ID"] == "op-123"
