"""``/resources`` (single manifests) and ``/resource-bundles``: writes, versions, two-phase delete, the event log."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import databases
import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from tests.integration.conftest import _with_state
from tests.integration.test_rest_consumers import assert_error
from tests.integration.test_walkthrough import NGINX

RESOURCES = "/api/maestro/v1/resources"
BUNDLES = "/api/maestro/v1/resource-bundles"
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}


@pytest.fixture(autouse=True)
async def consumer(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/api/maestro/v1/consumers", json={"name": "cluster1"})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def nginx(name: str = "nginx", replicas: int = 1) -> dict[str, Any]:
    manifest = copy.deepcopy(NGINX)
    manifest["metadata"]["name"] = name
    manifest["spec"]["replicas"] = replicas
    return manifest


async def post(client: httpx.AsyncClient, url: str = RESOURCES, **body: Any) -> dict[str, Any]:
    body.setdefault("consumer_name", "cluster1")
    if url == RESOURCES:
        body.setdefault("manifest", nginx())
    else:
        body.setdefault("manifests", [nginx()])
    response = await client.post(url, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def events(database: databases.Database, rid: str | None = None) -> list[tuple[str, str, int]]:
    rows = await database.fetch_all(
        "SELECT source_id, event_type, version FROM events WHERE (CAST(:rid AS text) IS NULL OR source_id = :rid)"
        " ORDER BY id",
        {"rid": rid},
    )
    return [(r["source_id"], r["event_type"], r["version"]) for r in rows]


async def count(database: databases.Database, table: str) -> int:
    return int(await database.fetch_val(f"SELECT count(*) FROM {table}"))


async def same_transaction(database: databases.Database, rid: str) -> bool:
    """The resource row's last writer is the transaction that appended its latest event."""
    return bool(
        await database.fetch_val(
            "SELECT (e.xid::text::bigint % 4294967296) = r.xmin::text::bigint FROM resources r"
            " JOIN events e ON e.source_id = r.id WHERE r.id = :rid ORDER BY e.id DESC LIMIT 1",
            {"rid": rid},
        )
    )


# -- single resources: create ------------------------------------------------------------------------


async def test_create_defaults_and_event(client: httpx.AsyncClient, database: databases.Database) -> None:
    created = await post(client)
    assert created["update_strategy"] == {"type": "ServerSideApply"}
    assert created["delete_option"] == {"propagationPolicy": "Foreground"}
    assert created["version"] == 1
    assert created["name"] == created["id"]
    assert await events(database) == [(created["id"], "Create", 1)]
    assert await same_transaction(database, created["id"])
    row = await database.fetch_one("SELECT type, source, payload FROM resources WHERE id = :id", {"id": created["id"]})
    assert row is not None
    assert (row["type"], row["source"]) == ("Single", "maestro")


@pytest.mark.parametrize("strategy", ["ServerSideApply", "Update", "CreateOnly", "ReadOnly"])
@pytest.mark.parametrize("policy", ["Foreground", "Orphan"])
async def test_create_each_strategy_and_policy(client: httpx.AsyncClient, strategy: str, policy: str) -> None:
    created = await post(
        client, name="web", update_strategy={"type": strategy}, delete_option={"propagationPolicy": policy}
    )
    assert created["name"] == "web"
    assert created["update_strategy"] == {"type": strategy}
    assert created["delete_option"] == {"propagationPolicy": policy}
    assert (await client.get(created["href"])).json() == created


async def test_create_lists_every_problem(client: httpx.AsyncClient, database: databases.Database) -> None:
    body = {
        "consumer_name": "cluster1",
        "name": "Not_Valid",
        "version": -1,
        "manifest": {"kind": "Deployment", "metadata": {"generateName": "x-"}},
        "update_strategy": {"type": "Sideways"},
        "delete_option": {"propagationPolicy": "SelectivelyOrphan"},
        "colour": "red",
    }
    reason = assert_error(await client.post(RESOURCES, json=body), 400, 8)["reason"]
    for text in (
        "unknown field 'colour'",
        "name must be a lowercase RFC 1123 subdomain",
        "version must be an integer",
        "manifest.apiVersion is required",
        "manifest.metadata.name is required",
        "manifest.metadata.generateName must not be set",
        "update_strategy.type must be one of ServerSideApply, Update, CreateOnly, ReadOnly",
        "must be Foreground or Orphan for a single resource",
    ):
        assert text in reason
    assert await count(database, "resources") == 0
    assert await count(database, "events") == 0


async def test_create_for_unknown_consumer_is_400(client: httpx.AsyncClient, database: databases.Database) -> None:
    response = await client.post(RESOURCES, json={"consumer_name": "cluster9", "manifest": nginx()})
    assert "cluster9" in assert_error(response, 400, 8)["reason"]
    missing = await client.post(RESOURCES, json={"manifest": nginx()})
    assert "consumer_name is required" in assert_error(missing, 400, 8)["reason"]
    assert await count(database, "resources") == 0
    assert await count(database, "events") == 0


async def test_create_duplicate_is_409(client: httpx.AsyncClient, database: databases.Database) -> None:
    first = await post(client, name="web")
    response = await client.post(RESOURCES, json={"consumer_name": "cluster1", "name": "web", "manifest": nginx("b")})
    assert "name" in assert_error(response, 409, 6)["reason"]
    same_id = await client.post(
        RESOURCES, json={"consumer_name": "cluster1", "id": first["id"], "name": "other", "manifest": nginx()}
    )
    assert_error(same_id, 409, 6)
    assert await events(database) == [(first["id"], "Create", 1)]


async def test_write_and_event_are_one_transaction(
    client: httpx.AsyncClient, database: databases.Database, settings: Settings
) -> None:
    """If the event cannot be appended, the resource is not written either (and the client gets a 500 body)."""
    app = create_app(settings, database=database)
    # NB: Starlette re-raises unhandled errors after sending the 500 (for the server to log); don't raise here.
    transport = httpx.ASGITransport(
        app=_with_state(app, {"database": database, "settings": settings}),  # type: ignore[arg-type]
        raise_app_exceptions=False,
    )
    await database.execute("ALTER TABLE events RENAME TO events_gone")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://maestro") as raw:
            response = await raw.post(RESOURCES, json={"consumer_name": "cluster1", "manifest": nginx()})
        assert_error(response, 500, 9)
        assert await count(database, "resources") == 0
    finally:
        await database.execute("ALTER TABLE events_gone RENAME TO events")


# -- single resources: patch -------------------------------------------------------------------------


async def test_patch_versions(client: httpx.AsyncClient, database: databases.Database) -> None:
    created = await post(client)
    rid = created["id"]

    changed = await client.patch(created["href"], json={"version": 1, "manifest": nginx(replicas=3)})
    assert changed.status_code == 200, changed.text
    v2 = changed.json()
    assert v2["version"] == 2
    assert v2["manifest"]["spec"]["replicas"] == 3
    assert await same_transaction(database, rid)

    same = await client.patch(created["href"], json={"version": 2, "manifest": nginx(replicas=3)})
    assert same.status_code == 200
    assert same.json() == v2

    stale = await client.patch(created["href"], json={"version": 1, "manifest": nginx(replicas=5)})
    reason = assert_error(stale, 409, 6)["reason"]
    assert "the latest version: 2" in reason

    unchecked = await client.patch(created["href"], json={"version": 0, "update_strategy": {"type": "Update"}})
    assert unchecked.status_code == 200
    v3 = unchecked.json()
    assert (v3["version"], v3["update_strategy"], v3["manifest"]) == (3, {"type": "Update"}, nginx(replicas=3))

    missing = await client.patch(created["href"], json={"manifest": nginx(replicas=9)})
    assert "version is required" in assert_error(missing, 400, 8)["reason"]

    assert await events(database) == [(rid, "Create", 1), (rid, "Update", 2), (rid, "Update", 3)]
    assert (await client.get(created["href"])).json() == v3


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"version": 1, "consumer_name": "cluster2"}, "consumer_name cannot be changed"),
        ({"version": 1, "name": "renamed"}, "name cannot be changed"),
        ({"version": 1, "manifest": {"apiVersion": "v1"}}, "manifest.kind is required"),
        ({"version": 1, "delete_option": {"propagationPolicy": "Never"}}, "propagationPolicy must be one of"),
        ({"version": "1"}, "version must be an integer"),
        ({"version": 1, "colour": "red"}, "unknown field 'colour'"),
    ],
)
async def test_patch_bad_body_is_400(
    client: httpx.AsyncClient, database: databases.Database, body: dict[str, Any], text: str
) -> None:
    created = await post(client)
    assert text in assert_error(await client.patch(created["href"], json=body), 400, 8)["reason"]
    assert (await client.get(created["href"])).json() == created
    assert len(await events(database)) == 1


async def test_patch_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"{RESOURCES}/{uuid.uuid4()}", json={"version": 0, "manifest": nginx()})
    assert_error(response, 404, 7)


# -- single resources: delete ------------------------------------------------------------------------


async def test_delete_is_two_phase_and_idempotent(client: httpx.AsyncClient, database: databases.Database) -> None:
    created = await post(client)
    rid = created["id"]
    first = await client.delete(created["href"])
    assert first.status_code == 204
    assert first.content == b""
    deleting = (await client.get(created["href"])).json()
    assert "deleted_at" in deleting
    assert deleting["version"] == 1
    assert await same_transaction(database, rid)
    listed = (await client.get(RESOURCES, params={"search": "deleted_at is not null"})).json()
    assert [r["id"] for r in listed["items"]] == [rid]

    second = await client.delete(created["href"])
    assert second.status_code == 204
    assert (await client.get(created["href"])).json() == deleting
    assert await events(database, rid) == [(rid, "Create", 1), (rid, "Delete", 1)]

    patched = await client.patch(created["href"], json={"version": 0, "manifest": nginx(replicas=2)})
    assert "being deleted" in assert_error(patched, 409, 6)["reason"]
    assert await events(database, rid) == [(rid, "Create", 1), (rid, "Delete", 1)]


async def test_delete_unknown_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete(f"{RESOURCES}/{uuid.uuid4()}"), 404, 7)


async def test_get_unknown_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{RESOURCES}/{uuid.uuid4()}"), 404, 7)
    assert_error(await client.get(f"{RESOURCES}/not-a-uuid"), 404, 7)


# -- bundles -----------------------------------------------------------------------------------------


async def test_bundle_lifecycle(client: httpx.AsyncClient, database: databases.Database) -> None:
    rid = str(uuid.uuid4())
    configs = [
        {
            "resourceIdentifier": {"group": "apps", "resource": "deployments", "name": "nginx", "namespace": "default"},
            "feedbackRules": [{"type": "WellKnownStatus"}],
        }
    ]
    created = await post(
        client,
        BUNDLES,
        id=rid,
        metadata={"labels": {"app": "web"}},
        manifests=[CONFIGMAP, nginx()],
        manifest_configs=configs,
        delete_option={"propagationPolicy": "Orphan"},
    )
    assert created["id"] == rid
    assert created["kind"] == "ResourceBundle"
    assert created["href"] == f"{BUNDLES}/{rid}"
    assert created["version"] == 1
    assert created["manifests"] == [CONFIGMAP, nginx()]
    assert created["manifest_configs"] == configs
    assert created["delete_option"] == {"propagationPolicy": "Orphan"}
    assert created["metadata"]["labels"] == {"app": "web"}
    assert created["metadata"]["namespace"] == "cluster1"
    assert "creationTimestamp" in created["metadata"]
    assert (await client.get(created["href"])).json() == created

    # Bundles live under /resource-bundles only.
    assert_error(await client.get(f"{RESOURCES}/{rid}"), 404, 7)
    assert_error(await client.patch(f"{RESOURCES}/{rid}", json={"version": 0}), 404, 7)
    assert_error(await client.delete(f"{RESOURCES}/{rid}"), 404, 7)
    assert (await client.get(RESOURCES)).json()["total"] == 0

    replaced = await client.put(created["href"], json={"version": 1, "manifests": [nginx(replicas=2)]})
    assert replaced.status_code == 200, replaced.text
    v2 = replaced.json()
    assert v2["version"] == 2
    assert v2["manifests"] == [nginx(replicas=2)]
    assert v2["delete_option"] == {"propagationPolicy": "Foreground"}
    assert await same_transaction(database, rid)

    again = await client.put(created["href"], json={"version": 2, "manifests": [nginx(replicas=2)]})
    assert again.json()["version"] == 2
    stale = await client.put(created["href"], json={"version": 1, "manifests": [nginx(replicas=3)]})
    assert "the latest version: 2" in assert_error(stale, 409, 6)["reason"]
    missing = await client.put(created["href"], json={"manifests": [nginx(replicas=3)]})
    assert_error(missing, 400, 8)

    listed = (await client.get(BUNDLES)).json()
    assert (listed["kind"], listed["total"]) == ("ResourceBundleList", 1)
    assert listed["items"] == [v2]

    assert (await client.delete(created["href"])).status_code == 204
    deleting = (await client.get(created["href"])).json()
    assert "deleted_at" in deleting
    assert "deletionTimestamp" in deleting["metadata"]
    assert (await client.delete(created["href"])).status_code == 204
    put_deleting = await client.put(created["href"], json={"version": 0, "manifests": [nginx(replicas=4)]})
    assert_error(put_deleting, 409, 6)
    assert await events(database, rid) == [(rid, "Create", 1), (rid, "Update", 2), (rid, "Delete", 2)]


async def test_bundle_delete_unknown_is_204(client: httpx.AsyncClient, database: databases.Database) -> None:
    assert (await client.delete(f"{BUNDLES}/{uuid.uuid4()}")).status_code == 204
    assert (await client.delete(f"{BUNDLES}/not-even-a-uuid")).status_code == 204
    assert await count(database, "events") == 0


async def test_bundle_get_and_put_unknown_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{BUNDLES}/{uuid.uuid4()}"), 404, 7)
    assert_error(await client.put(f"{BUNDLES}/{uuid.uuid4()}", json={"version": 0, "manifests": [nginx()]}), 404, 7)


async def test_bundle_list_has_bundles_only(client: httpx.AsyncClient) -> None:
    """A single resource is readable by id as a bundle, but the bundle list and its total hold bundles only."""
    single = await post(client)
    bundle = await post(client, BUNDLES, manifests=[CONFIGMAP])
    listed = (await client.get(BUNDLES, params={"orderBy": "created_at"})).json()
    assert [b["id"] for b in listed["items"]] == [bundle["id"]]
    assert (listed["size"], listed["total"]) == (1, 1)
    assert (await client.get(BUNDLES, params={"size": 0})).json()["total"] == 1
    searched = (await client.get(BUNDLES, params={"search": f"id = '{single['id']}'"})).json()
    assert (searched["items"], searched["total"]) == ([], 0)
    as_bundle = (await client.get(f"{BUNDLES}/{single['id']}")).json()
    assert as_bundle["manifests"] == [single["manifest"]]
    assert as_bundle["manifest_configs"][0]["updateStrategy"] == {"type": "ServerSideApply"}
    assert as_bundle["delete_option"] == {"propagationPolicy": "Foreground"}
    resources = (await client.get(RESOURCES)).json()
    assert ([r["id"] for r in resources["items"]], resources["total"]) == ([single["id"]], 1)
    fields = (await client.get(BUNDLES, params={"fields": "consumer_name,metadata.name", "size": 1})).json()
    assert fields["items"] == [{"id": bundle["id"], "consumer_name": "cluster1", "metadata": {"name": bundle["id"]}}]


async def test_bundle_search(client: httpx.AsyncClient) -> None:
    a = await post(client, BUNDLES, name="a", metadata={"labels": {"app": "x"}}, manifests=[CONFIGMAP])
    await post(client, BUNDLES, name="b", metadata={"labels": {"app": "y"}}, manifests=[CONFIGMAP])
    for search in (
        "payload->'metadata'->'labels'->>'app' = 'x'",
        "payload->'metadata'->'labels' @> '{\"app\": \"x\"}'",
        "name = 'a' and consumer_name = 'cluster1' and version = 1",
    ):
        body = (await client.get(BUNDLES, params={"search": search})).json()
        assert [b["id"] for b in body["items"]] == [a["id"]], search


@pytest.mark.parametrize(
    ("manifests", "text"),
    [
        ([], "manifests must be a non-empty list"),
        ({"a": 1}, "manifests must be a non-empty list"),
        ([{"kind": "ConfigMap", "metadata": {"name": "a"}}], "manifests[0].apiVersion is required"),
        ([{"apiVersion": "v1", "metadata": {"name": "a"}}], "manifests[0].kind is required"),
        ([{"apiVersion": "v1", "kind": "ConfigMap"}], "manifests[0].metadata is required"),
        ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}], "manifests[0].metadata.name is required"),
        (
            [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "a-", "name": "a"}}],
            "manifests[0].metadata.generateName must not be set",
        ),
        (
            [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"resourceVersion": "7", "name": "a"}}],
            "manifests[0].metadata.resourceVersion must not be set",
        ),
        ([CONFIGMAP, nginx(), copy.deepcopy(CONFIGMAP)], "manifests[2] duplicates manifests[0]"),
        (["not an object"], "manifests[0] must be a Kubernetes object"),
    ],
)
async def test_bundle_manifest_validation(
    client: httpx.AsyncClient, database: databases.Database, manifests: Any, text: str
) -> None:
    response = await client.post(BUNDLES, json={"consumer_name": "cluster1", "manifests": manifests})
    assert text in assert_error(response, 400, 8)["reason"]
    created = await post(client, BUNDLES, manifests=[CONFIGMAP])
    put = await client.put(created["href"], json={"version": 1, "manifests": manifests})
    assert text in assert_error(put, 400, 8)["reason"]
    assert await count(database, "events") == 1


async def test_bundle_same_name_other_namespace_is_fine(client: httpx.AsyncClient) -> None:
    other = copy.deepcopy(CONFIGMAP)
    other["metadata"]["namespace"] = "kube-system"
    created = await post(client, BUNDLES, manifests=[CONFIGMAP, other])
    assert len(created["manifests"]) == 2


async def test_bundle_bad_fields(client: httpx.AsyncClient) -> None:
    body = {
        "consumer_name": "cluster1",
        "id": "nope",
        "manifests": [CONFIGMAP],
        "manifest_configs": {"a": 1},
        "metadata": {"labels": {"app": 5}},
        "delete_option": "Orphan",
        "status": {"hacked": True},
        "extra": 1,
    }
    reason = assert_error(await client.post(BUNDLES, json=body), 400, 8)["reason"]
    for text in (
        "id must be a UUID",
        "manifest_configs must be a list of objects",
        "metadata.labels: invalid value for label 'app'",
        "delete_option must be an object",
        "unknown field 'extra'",
    ):
        assert text in reason
