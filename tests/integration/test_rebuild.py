"""``maestro admin rebuild``: the resources table is a projection of the event logs (issue 9, item 1)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from typing import Any

import databases
import psycopg
import pytest

from protocol import sequence
from server.errors import ServiceError
from server.services import consumers, rebuild, resources, status
from server.services.status import Rejected, StatusReport
from server.store import maintenance, replay
from server.store.db import connection, transaction

pytestmark = pytest.mark.timeout(30)

SEQ = sequence.SequenceGenerator()
CONSUMERS = ("east", "west")
OPS = ("create", "create", "update", "update", "delete", "status", "status", "done", "retire", "nudge")


def configmap(name: str, value: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": str(value)},
    }


def report(rid: str, consumer: str, version: int, conditions: list[dict[str, Any]]) -> StatusReport:
    return StatusReport(
        consumer=consumer,
        resource_id=rid,
        version=version,
        sequence_id=SEQ.next(),
        status_hash=repr(conditions),
        conditions=conditions,
        resource_status=[],
        cluster_name=consumer,
        original_source="maestro",
    )


async def table(database: databases.Database) -> list[dict[str, Any]]:
    async with connection(database) as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM resources ORDER BY id")]


async def workload(database: databases.Database, *, writers: int, steps: int, seed: int) -> None:
    """Creates (singles and bundles, some reusing the id of a deleted resource), updates, delete requests,
    statuses (some stale), delete completions (by the agent, or retired by maintenance) and maintenance's re-publish
    nudges, from concurrent writers."""
    ids: list[tuple[str, str]] = []

    async def writer(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        for step in range(steps):
            op = rng.choice(OPS)
            if op == "create" or not ids:
                consumer = rng.choice(CONSUMERS)
                rid = rng.choice(ids)[0] if ids and rng.random() < 0.1 else str(uuid.uuid4())
                try:
                    if rng.random() < 0.5:
                        body = {"id": rid, "consumer_name": consumer, "manifest": configmap(f"c{n}-{step}", step)}
                        await resources.create_single(database, body, source="maestro", actor=f"w{n}")
                    else:
                        body = {"id": rid, "consumer_name": consumer, "manifests": [configmap(f"b{n}", step)]}
                        await resources.create_bundle(database, body, source="maestro", actor=f"w{n}")
                    ids.append((rid, consumer))
                except ServiceError:
                    pass  # the id is still in use
                continue
            rid, consumer = rng.choice(ids)
            try:
                if op == "update":
                    if (await resources.get(database, rid)).type == "Bundle":
                        body = {"version": 0, "consumer_name": consumer, "manifests": [configmap("u", step)]}
                        await resources.replace_bundle(database, rid, body, actor=f"w{n}")
                    else:
                        body = {"version": 0, "manifest": configmap("u", step)}
                        await resources.patch_single(database, rid, body, actor=f"w{n}")
                elif op == "delete":
                    await resources.mark_deleting(database, rid, actor=f"w{n}")
                elif op in ("status", "done"):
                    row = await resources.get(database, rid)
                    version = row.version - (1 if rng.random() < 0.2 else 0)
                    kind = "Deleted" if op == "done" else rng.choice(["Applied", "Available"])
                    conditions = [{"type": kind, "status": "True"}]
                    await status.accept(database, report(rid, consumer, version, conditions), source_id="maestro")
                elif op == "retire":
                    await status.retire_delete(database, rid, waited=0)
                else:
                    async with transaction(database) as conn:
                        await maintenance.append_events(conn, [(rid, consumer, "Update", 1)])
            except (ServiceError, Rejected):
                pass  # gone, being deleted, stale: refused as a client would see it

    await asyncio.gather(*(writer(n) for n in range(writers)))


@pytest.mark.parametrize("seed", [1, 2])
async def test_rebuild_equals_the_live_table_after_a_random_concurrent_workload(
    database: databases.Database, seed: int
) -> None:
    for name in CONSUMERS:
        await consumers.create(database, {"name": name})
    await workload(database, writers=6, steps=60, seed=seed)
    live = await table(database)
    assert len(live) > 10
    async with connection(database) as conn:
        kinds = {r[0] for r in await conn.fetch("SELECT DISTINCT event_type FROM events")}
        statuses = await conn.fetchval("SELECT count(*) FROM status_events")
    assert kinds == {"Create", "Update", "Delete", "Deleted"}
    assert statuses > 10

    outcome = await rebuild.rebuild(database, apply=False)
    assert outcome.differences == []
    applied = await rebuild.rebuild(database, apply=True)
    assert applied.differences == []
    assert await table(database) == live


async def test_rebuild_reports_every_difference_and_apply_restores_what_the_logs_say(
    database: databases.Database,
) -> None:
    for name in CONSUMERS:
        await consumers.create(database, {"name": name})
    await workload(database, writers=3, steps=30, seed=7)
    live = await table(database)
    with_status = next(r for r in live if r["status"] is not None)
    others = [r for r in live if r["id"] != with_status["id"]]
    changed, dropped = others[0], others[1]
    async with connection(database) as conn:
        gone = await conn.fetchval(
            "SELECT source_id FROM events WHERE event_type = 'Deleted' AND source_id NOT IN (SELECT id FROM resources)"
            " LIMIT 1"
        )
        stray = await conn.fetchrow(
            "SELECT * FROM events WHERE event_type = 'Deleted' AND source_id = $1 ORDER BY id DESC LIMIT 1", gone
        )
        assert stray is not None
        fact = stray["payload"]
        await conn.execute("UPDATE resources SET version = version + 5, payload = '{}' WHERE id = $1", changed["id"])
        await conn.execute("UPDATE resources SET status = NULL WHERE id = $1", with_status["id"])
        await conn.execute("DELETE FROM resources WHERE id = $1", dropped["id"])
        # A row the logs say was deleted, and one they know nothing of (as if written before the payload migration).
        await conn.execute(
            "INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            gone,
            fact["name"],
            fact["source"],
            stray["consumer_name"],
            fact["type"],
            stray["version"],
            fact["spec"],
        )
        await conn.execute(
            "INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
            " VALUES ('unlogged', 'unlogged', 'maestro', 'east', 'Bundle', 1, '{}')"
        )

    found = {(d.id, d.verdict, d.fields) for d in (await rebuild.rebuild(database, apply=False)).differences}
    assert found == {
        (changed["id"], "differs", ("version", "payload")),
        (with_status["id"], "differs", ("status",)),
        (dropped["id"], "missing", tuple(replay.FIELDS)),
        (gone, "deleted", ()),
        ("unlogged", "unlogged", ()),
    }
    outcome = await rebuild.rebuild(database, apply=True)
    assert outcome.applied == {"inserted": 1, "updated": 2, "deleted": 1}
    after = await table(database)
    assert [r for r in after if r["id"] != "unlogged"] == live
    remaining = (await rebuild.rebuild(database, apply=False)).differences
    assert [(d.id, d.verdict) for d in remaining] == [("unlogged", "unlogged")]
    async with connection(database) as conn:
        nudged = await conn.fetch("SELECT source_id FROM events WHERE reconciled_date IS NULL AND payload IS NULL")
    assert {changed["id"], dropped["id"]} <= {r["source_id"] for r in nudged}


def test_the_command_reports_differences_by_exit_status(db_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "server.cli", "admin", "rebuild", *args, "--db-url", db_url]
        return subprocess.run(command, capture_output=True, text=True, timeout=25, check=False)

    clean = run("--dry-run")
    assert (clean.returncode, clean.stdout.splitlines()[-1]) == (
        0,
        "differences between the resources table and the event logs: none",
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO consumers (id, name) VALUES ('c', 'east')")
        conn.execute(
            "INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
            " VALUES ('r1', 'r1', 'maestro', 'east', 'Bundle', 1, '{}')"
        )
    dirty = run("--dry-run")
    assert dirty.returncode == 3
    assert dirty.stdout.splitlines()[0].startswith("unlogged  r1: the log holds no spec of it")
    assert run("--apply").returncode == 0
    assert run("--dry-run").returncode == 3  # nothing to rebuild it from: left as it is
