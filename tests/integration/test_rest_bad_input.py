"""Hostile and broken input: every request gets a clear 4xx in the error body and the database is unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import databases
import httpx
import pytest

from tests.integration.test_rest_consumers import assert_error
from tests.integration.test_walkthrough import NGINX

API = "/api/maestro/v1"
LIMIT = 4 * 1024 * 1024
TABLES = ("consumers", "resources", "events", "status_events")


class World:
    """One consumer, one single resource and one bundle, and a snapshot of every table to compare against."""

    def __init__(self, consumer: dict[str, Any], resource: dict[str, Any], bundle: dict[str, Any]) -> None:
        self.consumer, self.resource, self.bundle = consumer, resource, bundle
        self.snapshot: dict[str, list[Any]] = {}

    def writes(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every endpoint that takes a body, with a valid body for it."""
        return [
            ("POST", f"{API}/consumers", {"name": "new-one"}),
            ("PATCH", self.consumer["href"], {"labels": {"a": "b"}}),
            ("POST", f"{API}/resources", {"consumer_name": "cluster1", "manifest": NGINX}),
            ("PATCH", self.resource["href"], {"version": 1, "manifest": NGINX}),
            ("POST", f"{API}/resource-bundles", {"consumer_name": "cluster1", "manifests": [NGINX]}),
            ("PUT", self.bundle["href"], {"version": 1, "manifests": [NGINX]}),
        ]


async def snapshot(database: databases.Database) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for table in TABLES:
        rows = await database.fetch_all(f"SELECT to_jsonb(t)::text AS j FROM {table} t ORDER BY 1")
        out[table] = [r["j"] for r in rows]
    return out


@pytest.fixture
async def world(client: httpx.AsyncClient, database: databases.Database) -> AsyncIterator[World]:
    consumer = (await client.post(f"{API}/consumers", json={"name": "cluster1", "labels": {"env": "prod"}})).json()
    resource = (await client.post(f"{API}/resources", json={"consumer_name": "cluster1", "manifest": NGINX})).json()
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    bundle = (
        await client.post(f"{API}/resource-bundles", json={"consumer_name": "cluster1", "manifests": [configmap]})
    ).json()
    w = World(consumer, resource, bundle)
    w.snapshot = await snapshot(database)
    yield w
    # Nothing a test here sends may change anything, and every table is still there.
    for table in TABLES:
        assert await database.fetch_val("SELECT to_regclass(:t) IS NOT NULL", {"t": table})
    assert await snapshot(database) == w.snapshot


def assert_4xx(response: httpx.Response, code: int | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    return assert_error(response, response.status_code, code if code is not None else int(body["id"]))


# -- bodies that are not JSON objects ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b'{"name": ',
        b"{'name': 'x'}",
        b'{"name": "x",}',
        b'{"name": "x"} trailing',
        b"[]",
        b'[{"name": "x"}]',
        b'"just a string"',
        b"42",
        b"-1.5e10",
        b"true",
        b"null",
        b"\xff\xfe{}",
        b'{"name": "\xff"}',
        b'{"name": "\xc3\x28"}',
        b"\x00",
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[" * 1_000_000,
        b'{"a": {"b": ' * 50_000 + b"1" + b"}}" * 50_000,
    ],
    ids=lambda raw: repr(raw[:24]),
)
async def test_not_a_json_object_is_400(client: httpx.AsyncClient, world: World, raw: bytes) -> None:
    for method, url, _ in world.writes():
        response = await client.request(method, url, content=raw, headers={"content-type": "application/json"})
        assert_4xx(response, 17)


# -- JSON the server must refuse ---------------------------------------------------------------------


STRING_FIELDS = {"name", "consumer_name", "id", "kind"}
LIST_FIELDS = {"manifests", "manifest_configs"}
NOT_A_STRING: list[Any] = [True, 0, -1, 1.5, 2**70, [], ["x"], {}, {"x": 1}]
NOT_AN_OBJECT: list[Any] = [True, 0, 1.5, 2**70, "", "x", [], ["x"]]
NOT_A_LIST: list[Any] = [True, 0, 1.5, 2**70, "", "x", {}, {"x": 1}, ["x"], [1]]
NOT_A_VERSION: list[Any] = [None, True, False, -1, 1.5, 2**31, 2**70, "", "1", [], [1], {}]


def wrong_values(field: str) -> list[Any]:
    """Values of the wrong type (or out of range) for ``field``; ``None`` is left out where it means "absent"."""
    if field == "version":
        return NOT_A_VERSION
    if field in STRING_FIELDS:
        return NOT_A_STRING
    if field in LIST_FIELDS:
        return NOT_A_LIST
    return NOT_AN_OBJECT


async def test_wrong_types_for_every_field(client: httpx.AsyncClient, world: World) -> None:
    fields: dict[str, list[str]] = {
        f"{API}/consumers": ["name", "labels", "id", "kind"],
        world.consumer["href"]: ["labels"],
        f"{API}/resources": ["name", "consumer_name", "version", "manifest", "update_strategy", "delete_option", "id"],
        world.resource["href"]: ["version", "manifest", "update_strategy", "delete_option", "name", "consumer_name"],
        f"{API}/resource-bundles": [
            "id", "name", "consumer_name", "version", "metadata", "manifests", "manifest_configs", "delete_option",
        ],
        world.bundle["href"]: ["version", "metadata", "manifests", "manifest_configs", "delete_option"],
    }  # fmt: skip
    checked = 0
    for method, url, good in world.writes():
        for field in fields[url]:
            for value in wrong_values(field):
                response = await client.request(method, url, json={**good, field: value})
                assert response.status_code < 500, (method, url, field, value, response.text)
                assert response.status_code >= 400, (method, url, field, value, response.text)
                assert_4xx(response, 8)
                checked += 1
    assert checked > 250


async def test_nested_wrong_types(client: httpx.AsyncClient, world: World) -> None:
    bad_manifests: list[Any] = [
        {**NGINX, "apiVersion": 1},
        {**NGINX, "kind": ["Deployment"]},
        {**NGINX, "metadata": "nginx"},
        {**NGINX, "metadata": {"name": 5}},
        {**NGINX, "metadata": {"name": "nginx", "namespace": 5}},
        {**NGINX, "metadata": {"name": "nginx", "labels": {"a": 1}}},
        {**NGINX, "metadata": {"name": "nginx", "annotations": ["a"]}},
        {**NGINX, "metadata": {"name": "nginx", "finalizers": "x"}},
        {**NGINX, "metadata": {"name": "Bad Name"}},
    ]
    for manifest in bad_manifests:
        assert_4xx(await client.post(f"{API}/resources", json={"consumer_name": "cluster1", "manifest": manifest}))
        assert_4xx(
            await client.post(f"{API}/resource-bundles", json={"consumer_name": "cluster1", "manifests": [manifest]})
        )
        assert_4xx(await client.patch(world.resource["href"], json={"version": 1, "manifest": manifest}))
        assert_4xx(await client.put(world.bundle["href"], json={"version": 1, "manifests": [manifest]}))
    for strategy in ({"type": 1}, {"type": "Update", "serverSideApply": 3}, {"kind": "Update"}):
        body = {"consumer_name": "cluster1", "manifest": NGINX, "update_strategy": strategy}
        assert_4xx(await client.post(f"{API}/resources", json=body))
    for option in ({"propagationPolicy": 1}, {"propagationPolicy": "Orphan", "x": 1}):
        body = {"consumer_name": "cluster1", "manifest": NGINX, "delete_option": option}
        assert_4xx(await client.post(f"{API}/resources", json=body))
    for configs in ([1], [{"resourceIdentifier": "x"}], [{"resourceIdentifier": {}, "feedbackRules": {}}]):
        body = {"consumer_name": "cluster1", "manifests": [NGINX], "manifest_configs": configs}
        assert_4xx(await client.post(f"{API}/resource-bundles", json=body))


async def test_unknown_fields(client: httpx.AsyncClient, world: World) -> None:
    for method, url, good in world.writes():
        for extra in ("colour", "Name", "consumerName", "labelz", "manifest ", ""):
            response = await client.request(method, url, json={**good, extra: "x"})
            assert f"unknown field '{extra}'" in assert_4xx(response, 8)["reason"]


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf")],
    ids=["nan", "inf", "-inf"],
)
async def test_non_finite_numbers_are_400(client: httpx.AsyncClient, world: World, value: float) -> None:
    """Python's json accepts NaN and Infinity, JSON and PostgreSQL do not."""
    manifest = {**NGINX, "spec": {**NGINX["spec"], "replicas": value}}
    raw = json.dumps({"consumer_name": "cluster1", "manifest": manifest})
    headers = {"content-type": "application/json"}
    assert_4xx(await client.post(f"{API}/resources", content=raw, headers=headers), 17)
    raw = json.dumps({"version": value})
    assert_4xx(await client.patch(world.resource["href"], content=raw, headers=headers), 17)


@pytest.mark.parametrize("text", ["\u0000", "a\u0000b", "\ud800", "x\udfffy"], ids=["nul", "nul-mid", "hi", "lo"])
async def test_strings_postgres_cannot_store_are_400(client: httpx.AsyncClient, world: World, text: str) -> None:
    """NUL and lone surrogates are valid JSON escapes, but neither UTF-8 nor jsonb can hold them."""
    manifest = {**NGINX, "spec": {**NGINX["spec"], "note": text}}
    headers = {"content-type": "application/json"}
    for method, url, body in [
        ("POST", f"{API}/resources", {"consumer_name": "cluster1", "manifest": manifest}),
        ("PATCH", world.resource["href"], {"version": 1, "manifest": manifest}),
        ("POST", f"{API}/resource-bundles", {"consumer_name": "cluster1", "manifests": [manifest]}),
        ("PUT", world.bundle["href"], {"version": 1, "manifests": [manifest], "metadata": {}}),
        ("POST", f"{API}/consumers", {"name": f"c{text}"}),
        ("PATCH", world.consumer["href"], {"labels": {"a": text}}),
        ("POST", f"{API}/resources", {"consumer_name": "cluster1", "manifest": {**NGINX, text: 1}}),
    ]:
        raw = json.dumps(body)  # ensure_ascii: the escapes \\u0000 and \\ud800 travel as JSON text
        assert_4xx(await client.request(method, url, content=raw, headers=headers))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"consumer_name": "cluster1", "manifest": {"kind": "ConfigMap", "x": "\xed\xa0\x80"}}',
        '{"consumer_name": "cluster1", "manifest": {"kind": "ConfigMap", "x": "\\u0000"}}'.encode("utf-16"),
        '{"consumer_name": "cluster1", "manifest": {"kind": "ConfigMap", "x": "\\udfff"}}'.encode("utf-32"),
    ],
    ids=["utf8-encoded-surrogate", "utf16-nul-escape", "utf32-surrogate-escape"],
)
async def test_unstorable_strings_in_any_encoding_json_reads_are_400(client: httpx.AsyncClient, raw: bytes) -> None:
    """``json.loads`` reads UTF-16 and UTF-32 bodies too, and UTF-8 bytes of a surrogate (``surrogatepass``)."""
    headers = {"content-type": "application/json"}
    assert_4xx(await client.post(f"{API}/resources", content=raw, headers=headers), 17)


# -- huge bodies -------------------------------------------------------------------------------------


def _huge(size: int) -> bytes:
    filler = "x" * size
    return json.dumps({"consumer_name": "cluster1", "manifest": {**NGINX, "data": {"blob": filler}}}).encode()


async def test_huge_body_with_content_length(client: httpx.AsyncClient, world: World) -> None:
    raw = _huge(LIMIT + 1)
    for method, url, _ in world.writes():
        reason = assert_4xx(await client.request(method, url, content=raw), 17)["reason"]
        assert "larger than the limit" in reason


async def test_huge_body_chunked(client: httpx.AsyncClient, world: World) -> None:
    raw = _huge(LIMIT + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 64 * 1024):
            yield raw[i : i + 64 * 1024]

    for method, url, _ in world.writes():
        response = await client.request(method, url, content=chunks())
        assert "content-length" not in response.request.headers
        assert "larger than the limit" in assert_4xx(response, 17)["reason"]


async def test_lying_content_length(client: httpx.AsyncClient, world: World) -> None:
    """A declared length under the limit does not let a bigger streamed body through."""
    raw = _huge(LIMIT + 1)

    async def chunks() -> AsyncIterator[bytes]:
        yield raw

    response = await client.post(f"{API}/resources", content=chunks(), headers={"content-length": "10"})
    assert_4xx(response, 17)


async def test_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient, database: databases.Database) -> None:
    await client.post(f"{API}/consumers", json={"name": "cluster1"})
    raw = _huge(LIMIT - 1024)
    assert len(raw) < LIMIT
    response = await client.post(f"{API}/resources", content=raw)
    assert response.status_code == 201, response.text[:300]


# -- query strings -----------------------------------------------------------------------------------


SQLISH = [
    "name = 'x'; drop table consumers; --",
    "name = 'x'; DROP TABLE resources",
    "1=1",
    "' or ''='",
    "name = '' or ''=''",
    "name = 'x' or 1=1",
    "name = 'x' -- comment",
    "name = 'x' /* c */",
    "name = 'x' union select * from consumers",
    "name = 'x'); delete from events; --",
    "id = 1 or true",
    "name = $1",
    "name = E'\\x27'",
    "name = 'x'' or ''1''=''1'",
    "name = 'a''; drop table consumers; --'",
    "name = 'x' or 'a' = 'a'",
    "name = 'x\u02bc or 1=1 --",
    "name = \uff07x\uff07",
    "name \uff1d 'x'",
    "name = 'x' \u2028or 1=1",
    "pg_sleep(10) = 1",
    "name = (select 1)",
    "labels->>'a''; drop table consumers; --' = 'x'",
    "labels @> '{\"a\": 1}'; drop table consumers",
    "name like '%' escape '\\'",
    "(" * 100 + "name = 'x'" + ")" * 100,
    "not " * 100 + "name = 'x'",
    "name = '" + "x" * 5000 + "'",
    "name = 'x\u0000'",
    "\u0000",
]
SAFE_MATCHES = {
    "name = 'x'' or ''1''=''1'",
    "name = 'a''; drop table consumers; --'",
    "labels->>'a''; drop table consumers; --' = 'x'",
}
"""Valid searches that look hostile: the grammar reads them as a plain comparison with a literal, matching nothing."""


@pytest.mark.parametrize("collection", ["consumers", "resources", "resource-bundles"])
async def test_sql_looking_searches(client: httpx.AsyncClient, world: World, collection: str) -> None:
    for text in SQLISH:
        response = await client.get(f"{API}/{collection}", params={"search": text})
        if text in SAFE_MATCHES and response.status_code == 200:
            assert response.json()["total"] == 0, text
            continue
        assert_4xx(response)
        assert response.json()["id"] in {"21", "23"}, text


@pytest.mark.parametrize("collection", ["consumers", "resources", "resource-bundles"])
async def test_bad_order_by_and_fields(client: httpx.AsyncClient, world: World, collection: str) -> None:
    for text in (
        "name; drop table consumers",
        "name desc, ",
        ",",
        "name nulls first",
        "1",
        "random()",
        'name collate "C"',
        "labels->>'a'",
        "x" * 5000,
        "name\u0000",
    ):
        assert_4xx(await client.get(f"{API}/{collection}", params={"orderBy": text}), 21)
    for text in ("nope", "name,(select 1)", "id;drop", "\u0000"):
        assert_4xx(await client.get(f"{API}/{collection}", params={"fields": text}), 21)
    for params in ({"page": "-1"}, {"page": "1e3"}, {"page": str(2**64)}, {"size": "x"}, {"page": "\u0661"}):
        assert_4xx(await client.get(f"{API}/{collection}", params=params), 21)


async def test_odd_paths(client: httpx.AsyncClient, world: World) -> None:
    for path in (
        "consumers/%00",
        "consumers/" + "a" * 10_000,
        "consumers/'%20or%20'1'='1",
        "resources/%ff%fe",
        "resource-bundles/%00",
        "errors/99999999999999999999",
        "errors/-1",
    ):
        assert_4xx(await client.get(f"{API}/{path}"), 7)
    assert_4xx(await client.delete(f"{API}/consumers/%00"), 7)
    assert_4xx(await client.delete(f"{API}/resources/%00"), 7)
    assert (await client.delete(f"{API}/resource-bundles/%00")).status_code == 204


async def test_wrong_methods(client: httpx.AsyncClient, world: World) -> None:
    for method, path in (
        ("PUT", "consumers"),
        ("DELETE", "consumers"),
        ("POST", f"consumers/{world.consumer['id']}"),
        ("PUT", f"resources/{world.resource['id']}"),
        ("PATCH", f"resource-bundles/{world.bundle['id']}"),
        ("POST", "errors"),
    ):
        response = await client.request(method, f"{API}/{path}", json={})
        assert_4xx(response, 10)
        assert response.status_code == 405
        assert "Allow" in response.headers


async def test_hostile_operation_id_is_replaced(client: httpx.AsyncClient, world: World) -> None:
    for given in ("x" * 1000, "a b", "<script>", "Set-Cookie: a=b"):
        response = await client.get(f"{API}/consumers/none", headers={"X-Operation-ID": given})
        body = assert_4xx(response, 7)
        assert body["operation_id"] != given
