"""Lists render their items in PostgreSQL (``server.store.projections``): for varied rows, every item and every
``fields=`` projection is the same JSON as the Python presenters give for the same row, keys in the same order;
and a page PostgreSQL cannot render (an agent's invalid ``jsonRaw``) is rendered by the presenters instead."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import databases
import httpx
import pytest

from server.http import params, presenters
from server.store import consumers, listing, resources
from server.store.db import connection
from server.store.rows import ResourceType

UTC = datetime.UTC
T0 = datetime.datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=UTC)
T1 = datetime.datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC)  # no microseconds: rendered without a fraction
NGINX = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"}}
CONDITIONS = [{"type": "Applied", "status": "True", "reason": "AppliedManifestComplete", "message": "ok"}]


def feedback(*values: dict[str, Any]) -> dict[str, Any]:
    return {"statusFeedback": {"values": list(values)}}


def raw(name: str, text: Any, type: str = "JsonRaw") -> dict[str, Any]:
    field: dict[str, Any] = {"type": type}
    if text is not None:
        field["jsonRaw"] = text
    return {"name": name, "fieldValue": field}


def data(**extra: Any) -> dict[str, Any]:
    return {"manifests": [NGINX], "deleteOption": {"propagationPolicy": "Orphan"}, "manifestConfigs": [], **extra}


BUNDLES: list[dict[str, Any]] = [
    {
        "payload": {
            "metadata": {"name": "a", "labels": {"app": "x"}, "annotations": {"q": "it's \"q\" \\ ü 🙂"}},
            "data": data(manifestConfigs=[{"updateStrategy": {"type": "Update"}}]),
        },
        "status": {"ObservedVersion": 2, "SequenceID": "7", "conditions": CONDITIONS, "resourceStatus": [], "x": 1},
    },
    {"payload": {"metadata": {"name": "b"}, "data": data()}, "status": None, "created_at": T1, "deleted_at": T0},
    {"payload": {"data": {}}, "status": {}, "deleted_at": T1},
    {"payload": {"metadata": {}, "data": {"manifests": [], "deleteOption": None}}, "status": "null"},
    {"payload": {"metadata": {"creationTimestamp": "old", "n": [1.5, 1e5, 2**64, True, None]}, "data": data()},
     "status": {"conditions": []}},
    {"payload": {"metadata": {"name": "c", "labels": {"ctl": "\u0001\t\n"}}, "data": data()}, "status": {"other": 1}},
]  # fmt: skip

SINGLES: list[dict[str, Any]] = [
    {
        "payload": {"data": data(manifestConfigs=[{"updateStrategy": {"type": "CreateOnly"}}])},
        "status": {
            "ObservedVersion": 1,
            "SequenceID": "s1",
            "resourceStatus": [{"conditions": CONDITIONS, **feedback(raw("status", '{"replicas": 2, "x": [1.0]}'))}],
        },
    },
    {
        "payload": {"data": data()},
        "status": {
            "ObservedVersion": 3,
            "resourceStatus": [
                {**feedback(raw("other", '"no"'), raw("status", "[1, 2]", type="String"), raw("status", "7"))}
            ],
        },
    },
    {"payload": {"data": data()}, "status": {"ObservedVersion": 1, "resourceStatus": [feedback(raw("status", ""))]}},
    {"payload": {"data": data()}, "status": {"ObservedVersion": 1, "resourceStatus": [feedback(raw("status", None))]}},
    {"payload": {"data": data(deleteOption=None)}, "status": {"resourceStatus": []}, "deleted_at": T0},
    {"payload": {"data": {"manifests": [NGINX]}}, "status": None, "created_at": T1},
    {"payload": {"data": data()}, "status": {"ObservedVersion": 1, "resourceStatus": [{"statusFeedback": None}]}},
]

PROJECTIONS = [
    ["id"],
    ["name", "id"],
    ["status"],
    ["status.conditions", "status"],
    ["status", "status.conditions"],
    ["status.ReconcileStatus.Conditions", "status.ContentStatus"],
    ["metadata.labels"],
    ["metadata.labels.app", "metadata.name", "version"],
    ["metadata.*"],
    ["metadata.labels.nope", "metadata.name.x"],
    ["metadata", "metadata.labels.x"],
    ["manifests.0", "version.x", "kind", "href"],
    ["deleted_at", "created_at", "updated_at"],
    ["delete_option.propagationPolicy", "update_strategy", "manifest.metadata.name"],
    ["labels", "labels.a", "name"],
]


async def insert(
    database: databases.Database, type: ResourceType, rows: list[dict[str, Any]], *, prefix: str = ""
) -> None:
    for i, row in enumerate(rows):
        status = row.get("status")
        await database.execute(
            "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, status, created_at,"
            " updated_at, deleted_at) VALUES (:id, :name, 's', 'cluster1', :type, 1, :payload,"
            " CAST(:status AS text)::jsonb, :created_at, :updated_at, :deleted_at)",
            {
                "id": str(uuid.uuid4()),
                "name": f"{prefix}{type.lower()}-{i}",
                "type": type,
                "payload": row["payload"],
                "status": status if status is None or isinstance(status, str) else json.dumps(status),
                "created_at": row.get("created_at", T0 + datetime.timedelta(seconds=i)),
                "updated_at": T0 + datetime.timedelta(minutes=i, microseconds=i),
                "deleted_at": row.get("deleted_at"),
            },
        )


@pytest.fixture
async def loaded(database: databases.Database) -> None:
    for name, labels in (("cluster1", {"a": "b", "ü": "🙂"}), ("cluster2", None), ("cluster3", {})):
        await database.execute(
            "INSERT INTO consumers (id, name, labels, created_at, updated_at)"
            " VALUES (:id, :name, CAST(:labels AS text)::jsonb, :t, :t)",
            {"id": str(uuid.uuid4()), "name": name, "labels": json.dumps(labels), "t": T0 if labels else T1},
        )
    await insert(database, "Bundle", BUNDLES)
    await insert(database, "Single", SINGLES)


def with_id(names: list[str]) -> list[str]:
    return names if "id" in names else ["id", *names]


@pytest.mark.parametrize("names", [None, *PROJECTIONS], ids=lambda n: ",".join(n) if n else "all")
@pytest.mark.parametrize("kind", ["Bundle", "Single", "Consumer"])
async def test_items_match_the_presenters(
    database: databases.Database, loaded: None, kind: str, names: list[str] | None
) -> None:
    known = params.KNOWN_FIELDS["Resource" if kind == "Single" else "ResourceBundle" if kind == "Bundle" else kind]
    fields = with_id([n for n in names if n.split(".")[0] in known]) if names is not None else None
    query = listing.ListQuery(size=100)
    async with connection(database) as conn:
        if kind == "Consumer":
            rows: list[Any] = (await consumers.page(conn, query)).items
            items = (await consumers.page_json(conn, query, fields=fields)).items
            present: Any = presenters.consumer
        else:
            rows = (await resources.page(conn, query, type=kind)).items  # type: ignore[arg-type]
            items = (await resources.page_json(conn, query, type=kind, fields=fields)).items  # type: ignore[arg-type]
            present = presenters.bundle if kind == "Bundle" else presenters.resource
    assert len(rows) == len(items) == {"Bundle": len(BUNDLES), "Single": len(SINGLES), "Consumer": 3}[kind]
    for row, text in zip(rows, items, strict=True):
        expected = present(row)
        if fields is not None:
            expected = params.project(expected, fields)
        got = json.loads(text)
        assert got == expected, text
        assert list(got) == list(expected), "top-level keys in another order"


async def test_invalid_json_raw_is_rendered_by_the_presenters(
    client: httpx.AsyncClient, database: databases.Database, loaded: None
) -> None:
    bad = {"ObservedVersion": 1, "resourceStatus": [feedback(raw("status", "{not json"))]}
    await insert(database, "Single", [{"payload": {"data": data()}, "status": bad}], prefix="bad-")
    listed = await client.get("/api/maestro/v1/resources", params={"search": "name = 'bad-single-0'"})
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item["status"]["ContentStatus"] is None
    assert item["status"]["ReconcileStatus"]["ObservedVersion"] == 1
    assert item == (await client.get(item["href"])).json()
    everything = await client.get("/api/maestro/v1/resources", params={"fields": "status.ContentStatus"})
    assert everything.status_code == 200, everything.text
    assert {"id": item["id"], "status": {"ContentStatus": None}} in everything.json()["items"]


async def test_list_body_is_the_envelope_with_the_items(client: httpx.AsyncClient, loaded: None) -> None:
    response = await client.get("/api/maestro/v1/resource-bundles", params={"size": 2, "page": 2})
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["kind", "page", "size", "total", "items"]
    assert (body["kind"], body["page"], body["size"], body["total"]) == ("ResourceBundleList", 2, 2, len(BUNDLES))
    for item in body["items"]:
        assert item == (await client.get(item["href"])).json()
