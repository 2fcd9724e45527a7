"""Every documented search form, and every maintenance query, is answered from an index.

20,000 resources (1 % of them single resources) over 200 consumers, with their spec and status events over 4.6
days, are written by one ``INSERT ... SELECT generate_series`` each and ANALYZEd: enough that PostgreSQL prefers
an index wherever one applies. The queries are the hub's own: the store functions run against a connection that
records their statements, and each recorded statement is then EXPLAINed with its parameters (so a change to the
SQL the store writes is checked too, not a copy of it kept here).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import asyncpg
import pytest

from server.store import db as store_db
from server.store import listing, maintenance, resources
from server.store.rows import ResourceType
from tests.fixtures import postgres

ROWS = 20_000

_LOAD = [
    "INSERT INTO consumers (id, name) SELECT 'c-' || i, 'cluster-' || i FROM generate_series(0, 199) AS i",
    "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, status, created_at,"
    " updated_at, deleted_at)"
    " SELECT md5(i::text)::uuid::text, 'work-' || i, 'src-' || (i % 100), 'cluster-' || (i % 200),"
    "  CASE WHEN i % 100 = 0 THEN 'Single' ELSE 'Bundle' END, 1,"
    "  jsonb_build_object("
    "   'metadata', CASE WHEN i % 50 = 1 THEN jsonb_build_object('name', 'work-' || i)"
    "    ELSE jsonb_build_object('name', 'work-' || i, 'labels', jsonb_build_object("
    "     'app', 'app-' || (i % 1000), 'env', (ARRAY['prod', 'dev', 'test'])[i % 3 + 1], 'tier', i % 7)) END,"
    "   'manifests', jsonb_build_array(jsonb_build_object('apiVersion', 'v1', 'kind', 'ConfigMap',"
    "    'metadata', jsonb_build_object('name', 'cm-' || i, 'namespace', 'default'),"
    "    'data', jsonb_build_object('v', i::text)))),"
    "  CASE WHEN i % 400 = 3 THEN NULL ELSE jsonb_build_object('ObservedVersion', 1) END,"
    "  now() - ($ROWS - i) * interval '20 seconds', now() - ($ROWS - i) * interval '20 seconds',"
    "  CASE WHEN i % 1000 = 7 THEN now() - interval '1 hour' END"
    " FROM generate_series(0, $ROWS - 1) AS i",
    "INSERT INTO events (source_id, consumer_name, event_type, version, created_at, reconciled_date)"
    " SELECT id, consumer_name, 'Create', 1, created_at, created_at FROM resources",
    "INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name, status_event_type,"
    " version, status, created_at)"
    " SELECT id, source, type, consumer_name, 'StatusUpdate', 1, status, created_at FROM resources",
]

SEARCHES = [
    "payload->'metadata'->'labels'->>'app' = 'app-7'",
    "payload.metadata.labels.app = 'app-7'",
    """payload->'metadata'->'labels' @> '{"app": "app-7"}'""",
    """payload->'metadata' @> '{"labels": {"app": "app-7", "env": "dev"}}'""",
    "payload.metadata.labels.app in ('app-7', 'app-8')",
    "payload->'metadata'->'labels'->>'app' = 'app-7' and payload.metadata.labels.env = 'dev'",
    "payload.metadata.labels.app = 'app-7' or payload.metadata.labels.app = 'app-9'",
    "payload.metadata.labels.app = 'app-7' and not (payload.metadata.labels.env = 'dev')",
    "payload.metadata.labels.tier = '3' and consumer_name = 'cluster-7'",
    "name = 'work-123'",
    "name in ('work-123', 'work-456')",
    "name like 'work-1234%'",
    "id like 'c8ff%'",
    "consumer_name = 'cluster-7'",
    "consumer_name = 'cluster-7' and deleted_at is null",
    "source = 'src-42'",
    "created_at > '2999-01-01T00:00:00Z'",
]
ORDERS = ["", "created_at desc", "consumer_name", "consumer_name desc, created_at", "source", "name"]


class Recording:
    """A :class:`store_db.Conn` that runs every statement and remembers it, with its arguments."""

    def __init__(self, conn: store_db.Conn) -> None:
        self._conn = conn
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]:
        self.statements.append((query, args))
        return await self._conn.fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> asyncpg.Record | None:
        self.statements.append((query, args))
        return await self._conn.fetchrow(query, *args, timeout=timeout)

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        self.statements.append((query, args))
        return await self._conn.fetchval(query, *args, column=column, timeout=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        self.statements.append((query, args))
        return await self._conn.execute(query, *args, timeout=timeout)

    async def executemany(self, command: str, args: Sequence[Sequence[Any]], *, timeout: float | None = None) -> None:
        raise AssertionError("not a query to EXPLAIN")


class DryRun(Recording):
    """Remembers writes without running them (their plans are all we want)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        self.statements.append((query, args))
        return "DELETE 0"


@pytest.fixture(scope="module")
def loaded(pg_server: postgres.PostgresServer, pg_template: str) -> Iterator[str]:
    """One loaded database for the module (loading and ANALYZE take longer than every EXPLAIN here)."""
    import psycopg

    name = "t_search_plans"
    postgres._psql(pg_server, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as load:
            for statement in _LOAD:
                load.execute(statement.replace("$ROWS", str(ROWS)))
            load.execute("ANALYZE")
        yield pg_server.dsn(name)
    finally:
        postgres._psql(pg_server, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
async def conn(loaded: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(loaded)
    await store_db.init_connection(connection)
    try:
        yield connection
    finally:
        await connection.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def explain(conn: asyncpg.Connection, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + query, *args)
    document = json.loads(plan) if isinstance(plan, str) else plan
    return list(_nodes(document[0]["Plan"]))


def assert_indexed(nodes: list[dict[str, Any]], *, table: str, where: str) -> None:
    scans = [n for n in nodes if n.get("Relation Name") == table]
    assert scans, f"{where}: {table} is not read at all: {nodes}"
    assert all(n["Node Type"] != "Seq Scan" for n in scans), f"{where}: sequential scan of {table}: {nodes}"


@pytest.mark.parametrize("text", SEARCHES)
@pytest.mark.parametrize("kind", ["Bundle", "Single"])
async def test_searches_use_an_index(conn: asyncpg.Connection, text: str, kind: ResourceType) -> None:
    recording = Recording(conn)
    await resources.page(recording, listing.ListQuery(search=text), type=kind)
    assert recording.statements
    for query, args in recording.statements:
        assert_indexed(await explain(conn, query, args), table="resources", where=f"{text!r}: {query}")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", ["Bundle", "Single"])
async def test_ordered_pages_use_an_index(conn: asyncpg.Connection, order: str, kind: ResourceType) -> None:
    recording = Recording(conn)
    await resources.page(recording, listing.ListQuery(order_by=order, size=100), type=kind)
    pages = [(q, a) for q, a in recording.statements if "LIMIT" in q]
    assert pages
    for query, args in pages:
        assert_indexed(await explain(conn, query, args), table="resources", where=f"{order!r}: {query}")


async def test_maintenance_queries_use_indexes(conn: asyncpg.Connection) -> None:
    recording = Recording(conn)
    assert await maintenance.undelivered(recording, older_than=60)
    assert await maintenance.unconfirmed_deletes(recording, quiet_for=60)
    assert await maintenance.stale_deletes(recording, older_than=60)
    statements = list(recording.statements)
    # NB: planned, not run; the retention (7 days) is past the oldest row (4.6 days), as in a steady state where
    # each round deletes only what aged out since the last one.
    prune = DryRun(conn)
    await maintenance.prune(prune, older_than=7 * 86400, versions_kept=3, written_within=600)
    statements += prune.statements
    assert len(statements) == 7
    for query, args in statements:
        nodes = await explain(conn, query, args)
        for table in {"resources", "events", "status_events"} & {n.get("Relation Name") for n in nodes}:
            assert_indexed(nodes, table=table, where=query)
