"""The spec log holds the facts: every accepted spec change appends the resource as written and who wrote it;
every accepted status is logged as received, once per status hash (issue 9, item 1)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import databases
import httpx
import psycopg
import pytest
from yoyo import get_backend, read_migrations

from protocol import sequence
from server import dsn, migrate
from server.app import create_app
from server.services import consumers, resources, status
from server.services.status import StatusReport
from server.settings import Settings
from server.store.db import connection
from tests.fixtures.postgres import PostgresServer
from tests.integration.conftest import _with_state
from tests.integration.security.support import Signer

pytestmark = pytest.mark.timeout(30)

API = "/api/maestro/v1"
SEQ = sequence.SequenceGenerator()


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": value},
    }


async def spec_events(database: databases.Database, rid: str) -> list[asyncpg.Record]:
    async with connection(database) as conn:
        return list(
            await conn.fetch(
                "SELECT event_type, version, payload, created_at FROM events WHERE source_id = $1 ORDER BY id", rid
            )
        )


async def row_of(database: databases.Database, rid: str) -> asyncpg.Record | None:
    async with connection(database) as conn:
        return await conn.fetchrow("SELECT * FROM resources WHERE id = $1", rid)


async def store(database: databases.Database, report: StatusReport) -> None:
    await status.accept(database, report, source_id="maestro")


def report(rid: str, version: int, conditions: list[dict[str, Any]], *, consumer: str = "cluster1") -> StatusReport:
    return StatusReport(
        consumer=consumer,
        resource_id=rid,
        version=version,
        sequence_id=SEQ.next(),
        status_hash="h-" + repr(conditions),
        conditions=conditions,
        resource_status=[{"resourceMeta": {"name": "cm"}, "conditions": [], "statusFeedback": {"values": []}}],
        cluster_name=consumer,
        original_source="maestro",
    )


def assert_fact(event: asyncpg.Record, row: asyncpg.Record, *, actor: str) -> None:
    """The event's payload is the row as written (so the row can be rebuilt from it)."""
    fact = event["payload"]
    assert event["version"] == row["version"]
    assert fact["spec"] == row["payload"]
    assert fact["actor"] == actor
    assert (fact["name"], fact["source"], fact["type"]) == (row["name"], row["source"], row["type"])
    for key in ("created_at", "updated_at", "deleted_at"):
        assert (fact[key] and datetime.fromisoformat(fact[key])) == row[key]


async def test_every_spec_change_logs_the_resource_as_written_and_by_whom(
    client: httpx.AsyncClient, database: databases.Database
) -> None:
    await consumers.create(database, {"name": "cluster1"})
    created = (
        await client.post(
            f"{API}/resources",
            json={"consumer_name": "cluster1", "manifest": configmap("cm"), "update_strategy": {"type": "Update"}},
        )
    ).json()
    rid = created["id"]
    after_create = await row_of(database, rid)
    patched = await client.patch(f"{API}/resources/{rid}", json={"version": 1, "manifest": configmap("cm", "2")})
    assert patched.status_code == 200
    after_update = await row_of(database, rid)
    assert (await client.delete(f"{API}/resources/{rid}")).status_code == 204
    after_delete = await row_of(database, rid)
    assert after_create
    assert after_update
    assert after_delete

    await store(database, report(rid, 2, [{"type": "Deleted", "status": "True"}]))
    assert await row_of(database, rid) is None

    log = await spec_events(database, rid)
    assert [(e["event_type"], e["version"]) for e in log] == [
        ("Create", 1),
        ("Update", 2),
        ("Delete", 2),
        ("Deleted", 2),
    ]
    assert_fact(log[0], after_create, actor="anonymous")
    assert_fact(log[1], after_update, actor="anonymous")
    assert_fact(log[2], after_delete, actor="anonymous")
    assert_fact(log[3], after_delete, actor="agent:cluster1")
    spec = log[1]["payload"]["spec"]["data"]
    assert spec["manifests"] == [configmap("cm", "2")]
    assert spec["manifestConfigs"][0]["updateStrategy"] == {"type": "Update"}
    assert spec["deleteOption"] == {"propagationPolicy": "Foreground"}
    # The row's own event time is the row's write time: same transaction.
    assert [e["created_at"] for e in log[:3]] == [r["updated_at"] for r in (after_create, after_update, after_delete)]


async def test_unchanged_specs_and_repeated_deletes_log_nothing(
    client: httpx.AsyncClient, database: databases.Database
) -> None:
    await consumers.create(database, {"name": "cluster1"})
    body = {"consumer_name": "cluster1", "manifests": [configmap("a")]}
    rid = (await client.post(f"{API}/resource-bundles", json=body)).json()["id"]
    assert (await client.put(f"{API}/resource-bundles/{rid}", json={**body, "version": 1})).status_code == 200
    assert (await client.delete(f"{API}/resource-bundles/{rid}")).status_code == 204
    assert (await client.delete(f"{API}/resource-bundles/{rid}")).status_code == 204
    assert [e["event_type"] for e in await spec_events(database, rid)] == ["Create", "Delete"]


async def test_a_source_writing_over_grpc_is_the_actor_unless_a_subject_authenticated(
    database: databases.Database,
) -> None:
    await consumers.create(database, {"name": "cluster1"})
    created = await resources.create_bundle(
        database, {"consumer_name": "cluster1", "manifests": [configmap("a")]}, source="s1", actor="alice"
    )
    row = created.row
    await resources.mark_deleting(database, row.id, actor="bob")
    log = await spec_events(database, row.id)
    assert [e["payload"]["actor"] for e in log] == ["alice", "bob"]


async def test_statuses_are_logged_as_received_once_per_status_hash(database: databases.Database) -> None:
    await consumers.create(database, {"name": "cluster1"})
    rid = (
        await resources.create_single(
            database, {"consumer_name": "cluster1", "manifest": configmap("cm")}, source="maestro"
        )
    ).row.id
    applied = [{"type": "Applied", "status": "True", "reason": "AppliedManifestComplete", "message": "ünïcode"}]
    available = [*applied, {"type": "Available", "status": "True", "reason": "ResourcesAvailable"}]
    first = report(rid, 1, applied)
    await store(database, first)
    for again in (report(rid, 1, applied), report(rid, 1, applied)):
        with pytest.raises(Exception, match="unchanged"):
            await store(database, again)
    await store(database, report(rid, 1, available))
    await store(database, report(rid, 1, applied))  # a change back is a change
    async with connection(database) as conn:
        logged = await conn.fetch("SELECT status FROM status_events WHERE resource_id = $1 ORDER BY id", rid)
    assert [s["status"]["conditions"] for s in logged] == [applied, available, applied]
    assert logged[0]["status"] == first.stored()


def test_the_migration_snapshots_every_existing_resource_and_drops_the_dead_columns(
    pg_server: PostgresServer,
) -> None:
    name = "t_payload_migration"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    url = pg_server.dsn(name)
    backend = get_backend(dsn.for_yoyo(url))
    every = read_migrations(migrate.migrations_dir())
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(every.filter(lambda m: m.id < "20261207_12")))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO consumers (id, name) VALUES ('c1', 'cluster1')")
            conn.execute(
                "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, status, deleted_at)"
                " VALUES ('r1', 'r1', 'maestro', 'cluster1', 'Bundle', 3, '{\"data\": {\"manifests\": []}}',"
                " '{\"ObservedVersion\": 3}', now())"
            )
            conn.execute(
                "INSERT INTO events (source_id, consumer_name, event_type, version)"
                " VALUES ('r1', 'cluster1', 'Delete', 3)"
            )
        with backend.lock():
            backend.apply_migrations(backend.to_apply(every))
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT * FROM resources").fetchone()
            events = conn.execute(
                "SELECT event_type, version, payload, created_at, reconciled_date IS NOT NULL FROM events ORDER BY id"
            ).fetchall()
            columns = {
                (t, c)
                for t, c in conn.execute(
                    "SELECT table_name, column_name FROM information_schema.columns"
                    " WHERE table_name IN ('events', 'status_events')"
                ).fetchall()
            }
        assert row is not None
        assert [(e[0], e[1], e[4]) for e in events] == [("Delete", 3, False), ("Snapshot", 3, True)]
        snapshot = events[1][2]
        assert snapshot["spec"] == {"data": {"manifests": []}}
        assert snapshot["actor"] == "migration"
        assert snapshot["deleted_at"] is not None
        assert events[1][3] == row[9]
        assert ("events", "source") not in columns
        assert ("status_events", "reconciled_date") not in columns

        # The rollback restores the old schema (the snapshots go), and the migration applies again.
        with backend.lock():
            backend.rollback_migrations(backend.to_rollback(every.filter(lambda m: m.id.startswith("20261207_12"))))
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT event_type, source FROM events").fetchall() == [("Delete", "Resources")]
        with backend.lock():
            backend.apply_migrations(backend.to_apply(every))
    finally:
        backend.connection.close()
        with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_over_rest_the_authenticated_subject_is_the_actor(
    db_url: str, database: databases.Database, tmp_path: Path
) -> None:
    signer = Signer.create(tmp_path)
    settings = Settings.of(db_url=db_url, disable_auth=False, jwk_cert_file=str(signer.jwks_file))
    await consumers.create(database, {"name": "cluster1"})
    app = create_app(settings, database=database)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=_with_state(app, state))  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://maestro", headers=signer.headers("carol")
        ) as c:
            body = {"consumer_name": "cluster1", "manifests": [configmap("a")]}
            created = await c.post(f"{API}/resource-bundles", json=body)
            assert created.status_code == 201, created.text
    log = await spec_events(database, created.json()["id"])
    assert [e["payload"]["actor"] for e in log] == ["carol"]
