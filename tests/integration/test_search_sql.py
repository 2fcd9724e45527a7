"""Compiled search fragments run on a real PostgreSQL: the SQL is valid and means what the tests claim.

A TEMP table named ``resources`` mirrors the unit-test schema (``version`` is int4 on purpose, to prove the
``::bigint`` parameter casts compare correctly), so nothing here depends on the migrations.
"""

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.store import search
from tests.fixtures.postgres import PostgresServer

SCHEMA = search.Schema(
    columns={
        "id": search.Column("resources.id", "text"),
        "source": search.Column("resources.source", "text"),
        "name": search.Column("resources.name", "text"),
        "consumer_name": search.Column("resources.consumer_name", "text"),
        "version": search.Column("resources.version", "int"),
        "created_at": search.Column("resources.created_at", "timestamp"),
        "deleted_at": search.Column("resources.deleted_at", "timestamp"),
        "enabled": search.Column("resources.enabled", "bool"),
    },
    jsonb={"payload": "resources.payload", "labels": "resources.labels"},
)

_ROWS = [
    (
        "1", "src", "a", "c1", 1, "2024-01-01T00:00:00Z", None, True,
        '{"metadata": {"name": "web-1", "labels": {"app": "x", "env": "prod"}},'
        ' "manifests": [{"kind": "Deployment"}]}',
        '{"env": "prod"}',
    ),
    (
        "2", "src", "b", "c2", 2, "2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z", False,
        '{"metadata": {"name": "web-2", "labels": {"app": "y"}}}',
        '{"env": "dev"}',
    ),
    ("3", "other", "it's", "c1", 3, "2025-01-01T00:00:00Z", None, None, "{}", None),
]  # fmt: skip


@pytest.fixture
async def conn(pg_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_server.dsn())
    try:
        await connection.execute(
            "CREATE TEMP TABLE resources (id text, source text, name text, consumer_name text,"
            " version integer, created_at timestamptz, deleted_at timestamptz, enabled boolean,"
            " payload jsonb, labels jsonb)"
        )
        await connection.executemany(
            "INSERT INTO resources VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz, $7::text::timestamptz,"
            " $8, $9::text::jsonb, $10::text::jsonb)",
            _ROWS,
        )
        yield connection
    finally:
        await connection.close()


async def _ids(conn: asyncpg.Connection, text: str) -> list[str]:
    where, params = search.compile_search(text, schema=SCHEMA)
    rows = await conn.fetch(f"SELECT id FROM resources WHERE {where} ORDER BY id", *params)
    return [row["id"] for row in rows]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["1", "2", "3"]),
        ("name = 'a'", ["1"]),
        ("name = 'it''s'", ["3"]),
        ("name <> 'a'", ["2", "3"]),
        ("name like '%''%'", ["3"]),
        ("name ilike 'A'", ["1"]),
        ("name not in ('a', 'b')", ["3"]),
        ("version >= 2 and version < '3'", ["2"]),
        ("version in (1, 3)", ["1", "3"]),
        ("created_at > '2024-03-01T00:00:00Z'", ["2", "3"]),
        ("created_at <= '2024-01-01'", ["1"]),
        ("deleted_at is null", ["1", "3"]),
        ("deleted_at <> null", ["2"]),
        ("enabled = true", ["1"]),
        ("enabled is null", ["3"]),
        ("source = 'src' and (consumer_name = 'c2' or version = 1)", ["1", "2"]),
        ("not (consumer_name = 'c1')", ["2"]),
        ("labels.env = 'prod'", ["1"]),
        ("payload.metadata.name like 'web-%'", ["1", "2"]),
        ("payload->'metadata'->'labels'->>'app' = 'x'", ["1"]),
        ("payload->'metadata'->'labels'->>'app' in ('x', 'y')", ["1", "2"]),
        ("payload->'metadata'->'labels'->>'env'<>null", ["1"]),
        ("payload->'manifests'->0->>'kind' = 'Deployment'", ["1"]),
        ("""payload->'metadata'->'labels'@>'{"app":"y"}'""", ["2"]),
        ("""labels @> '{"env": "dev"}'""", ["2"]),
        ("payload->'metadata' is null", ["3"]),
        ("name = 'x''; drop table resources; --'", []),
    ],
)
async def test_fragment_runs_and_selects(conn: asyncpg.Connection, text: str, expected: list[str]) -> None:
    assert await _ids(conn, text) == expected


async def test_first_param_leaves_room_for_the_callers_parameters(conn: asyncpg.Connection) -> None:
    where, params = search.compile_search("version > 1", schema=SCHEMA, first_param=2)
    rows = await conn.fetch(f"SELECT id FROM resources WHERE source = $1 AND {where}", "src", *params)
    assert [row["id"] for row in rows] == ["2"]


async def test_order_by_runs(conn: asyncpg.Connection) -> None:
    order = search.compile_order_by("consumer_name desc, created_at", schema=SCHEMA)
    rows = await conn.fetch(f"SELECT id FROM resources ORDER BY {order}")
    assert [row["id"] for row in rows] == ["2", "1", "3"]


# -- Indexed JSON: the containment the compiler adds never changes which rows a search selects ------------

INDEXED = search.Schema(columns=SCHEMA.columns, jsonb=SCHEMA.jsonb, indexed_json={"resources.payload": ("metadata",)})

_SHAPES = [
    # What a label can be: a string, a number's or a boolean's text, null, missing, nested, an array, or the
    # path can run through a scalar or an array on the way.
    {"metadata": {"labels": {"app": "x"}}},
    {"metadata": {"labels": {"app": "y", "env": "prod"}}},
    {"metadata": {"labels": {"app": 5}}},
    {"metadata": {"labels": {"app": "5"}}},
    {"metadata": {"labels": {"app": 5.0}}},
    {"metadata": {"labels": {"app": 1e2}}},
    {"metadata": {"labels": {"app": True}}},
    {"metadata": {"labels": {"app": "true"}}},
    {"metadata": {"labels": {"app": None}}},
    {"metadata": {"labels": {"app": "null"}}},
    {"metadata": {"labels": {"app": ["x"]}}},
    {"metadata": {"labels": {"app": ["x", "y"]}}},
    {"metadata": {"labels": {"app": {"x": 1}}}},
    {"metadata": {"labels": {"app": ""}}},
    {"metadata": {"labels": {"app": "é'\""}}},
    {"metadata": {"labels": {}}},
    {"metadata": {"labels": None}},
    {"metadata": {"labels": "x"}},
    {"metadata": {"labels": [{"app": "x"}]}},
    {"metadata": {}},
    {"metadata": None},
    {"metadata": [{"labels": {"app": "x"}}]},
    {"manifests": [{"kind": "Deployment"}]},
    {"metadata": {"labels": {"app": "x"}, "0": {"app": "x"}}},
    {},
]

_SEMANTIC_SEARCHES = [
    "payload->'metadata'->'labels'->>'app' = 'x'",
    "payload.metadata.labels.app = 'x'",
    "payload->'metadata'->'labels'->>'app' = '5'",
    "payload->'metadata'->'labels'->>'app' = 5",
    "payload->'metadata'->'labels'->>'app' = '5.0'",
    "payload->'metadata'->'labels'->>'app' = '100'",
    "payload->'metadata'->'labels'->>'app' = '1e2'",
    "payload->'metadata'->'labels'->>'app' = 'true'",
    "payload->'metadata'->'labels'->>'app' = true",
    "payload->'metadata'->'labels'->>'app' = 'null'",
    "payload->'metadata'->'labels'->>'app' = ''",
    "payload->'metadata'->'labels'->>'app' = 'é''\"'",
    """payload->'metadata'->'labels'->>'app' = '["x"]'""",
    """payload->'metadata'->'labels'->>'app' = '{"x": 1}'""",
    "payload->'metadata'->'labels'->>'app' in ('x', 'y', '5', 'true')",
    "payload.metadata.labels.app in ('5', 'nope')",
    "payload->'metadata'->>'labels' = 'x'",
    "payload->'metadata'->'0'->>'app' = 'x'",
    "payload->'metadata'->0->>'app' = 'x'",
    """payload->'metadata'->'labels' @> '{"app": "x"}'""",
    """payload->'metadata'->'labels' @> '{"app": 5}'""",
    """payload->'metadata'->'labels' @> '{}'""",
    """payload->'metadata'->'labels'->'app' @> '["x"]'""",
    """payload->'metadata'->'labels'->'app' @> '"x"'""",
    """payload->'metadata' @> '{"labels": {"app": "y"}}'""",
    """payload @> '{"metadata": {"labels": {"app": "x"}}}'""",
    "payload->'metadata'->'labels'->>'app' <> 'x'",
    "payload->'metadata'->'labels'->>'app' not in ('x')",
    "not (payload->'metadata'->'labels'->>'app' = 'x')",
    "not (payload.metadata.labels.app = 'x' or name = 'a')",
    "not (not (payload.metadata.labels.app = 'x'))",
    "payload.metadata.labels.app = 'x' or payload.metadata.labels.env = 'prod'",
    "payload.metadata.labels.app = 'x' and payload->'metadata'->'labels' @> '{\"app\": \"x\"}'",
    "payload->'metadata'->'labels'->>'app' is null",
]


@pytest.fixture
async def shapes(pg_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_server.dsn())
    try:
        await connection.execute(
            "CREATE TEMP TABLE resources (id text, source text, name text, consumer_name text,"
            " version integer, created_at timestamptz, deleted_at timestamptz, enabled boolean,"
            " payload jsonb, labels jsonb)"
        )
        await connection.executemany(
            "INSERT INTO resources (id, name, payload) VALUES ($1, $2, $3::text::jsonb)",
            [(f"{i:02}", "a" if i % 2 else "b", json.dumps(shape)) for i, shape in enumerate(_SHAPES)],
        )
        await connection.execute("CREATE INDEX ON resources USING gin ((payload -> 'metadata') jsonb_path_ops)")
        await connection.execute("ANALYZE resources")
        yield connection
    finally:
        await connection.close()


async def _selected(conn: asyncpg.Connection, text: str, schema: search.Schema) -> list[str]:
    where, params = search.compile_search(text, schema=schema)
    rows = await conn.fetch(f"SELECT id FROM resources WHERE {where} ORDER BY id", *params)
    return [row["id"] for row in rows]


@pytest.mark.parametrize("text", _SEMANTIC_SEARCHES)
async def test_indexed_json_selects_the_same_rows(shapes: asyncpg.Connection, text: str) -> None:
    plain = await _selected(shapes, text, SCHEMA)
    assert await _selected(shapes, text, INDEXED) == plain
    # NB: and through the GIN index itself, not only by evaluating the containment row by row.
    await shapes.execute("SET enable_seqscan = off")
    try:
        assert await _selected(shapes, text, INDEXED) == plain
    finally:
        await shapes.execute("RESET enable_seqscan")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("payload->'metadata'->'labels'->>'app' = 'x'", ["00", "23"]),
        ("payload->'metadata'->'labels'->>'app' = '5'", ["02", "03"]),
        ("payload->'metadata'->'labels'->>'app' = 'true'", ["06", "07"]),
        ("not (payload->'metadata'->'labels'->>'app' = 'x')", ["01", "02", "03", "04", "05", "06", "07", "09",
                                                               "10", "11", "12", "13", "14"]),
    ],
)  # fmt: skip
async def test_indexed_json_keeps_text_and_null_semantics(
    shapes: asyncpg.Connection, text: str, expected: list[str]
) -> None:
    assert await _selected(shapes, text, INDEXED) == expected
