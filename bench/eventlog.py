"""Benchmark: what the event log costs and how fast it answers (issue 9, "Measure").

Starts (or uses) a PostgreSQL, migrates a fresh database per part, and prints:

1. **bytes** — log bytes per spec version and per status, written through the real write paths (the REST
   services and status ingest) for ``--sample`` single resources (the README's nginx Deployment) with
   ``--versions`` versions and one status per version: the average row (``pg_column_size``) and the table's
   on-disk growth with its indexes (TOAST included), per row.
2. **rebuild** — ``maestro admin rebuild`` on ``--resources`` resources (each: a create, an update, two statuses;
   written in bulk by SQL in the exact shape the write paths use): dry run (compare every row) and apply (with
   1 % of the rows damaged), in resources per second.
3. **history** — ``GET /resources/{id}/history`` (in-process ASGI: routing, SQL, presenting, JSON) of one
   resource with ``--history-versions`` versions and a status each, among 10,000 other resources' events; page
   sizes 20 (the default) and 100 (the maximum): p50/p99 per page over every page, ``--history-rounds`` times;
   and ``GET /resources/{id}?version=N``.

REST creates/s before and after is ``bench/rest_creates.py`` run in each checkout (see bench/README.md).

    .venv/bin/python bench/eventlog.py                       # throwaway PostgreSQL
    .venv/bin/python bench/eventlog.py --resources 100000 --history-versions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest_creates import NGINX, fresh_database, throwaway_postgres  # noqa: E402
from protocol import sequence  # noqa: E402
from server.app import create_app  # noqa: E402
from server.services import consumers, rebuild, resources  # noqa: E402
from server.services.status import StatusReport, accept  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.store import db as store_db  # noqa: E402

SEQ = sequence.SequenceGenerator()


def nginx(replicas: int, name: str = "nginx") -> dict[str, Any]:
    manifest = copy.deepcopy(NGINX)
    manifest["metadata"]["name"] = name
    manifest["spec"]["replicas"] = replicas
    return manifest


def status_of(rid: str, version: int, n: int) -> StatusReport:
    conditions = [
        {
            "type": "Applied",
            "status": "True",
            "reason": "AppliedManifestComplete",
            "message": "Apply manifest complete",
        },
        {"type": "Available", "status": "True", "reason": "ResourcesAvailable", "message": f"{n} resources available"},
    ]
    resource_status = [
        {
            "resourceMeta": {
                "group": "apps",
                "version": "v1",
                "kind": "Deployment",
                "resource": "deployments",
                "name": "nginx",
                "namespace": "default",
                "ordinal": 0,
            },
            "conditions": conditions,
            "statusFeedback": {
                "values": [
                    {
                        "name": "status",
                        "fieldValue": {
                            "type": "JsonRaw",
                            "jsonRaw": f'{{"availableReplicas":{n},"readyReplicas":{n},"replicas":{n}}}',
                        },
                    }
                ]
            },
        }
    ]
    return StatusReport(
        "cluster1", rid, version, SEQ.next(), f"h{version}-{n}", conditions, resource_status, "cluster1", "maestro"
    )


@contextlib.contextmanager
def database_url(admin: str | None) -> Iterator[str]:
    if admin:
        yield admin
        return
    with throwaway_postgres() as url:
        yield url


async def connect(url: str) -> Any:
    db = store_db.database(url, max_size=8)
    await db.connect()
    await consumers.create(db, {"name": "cluster1"})
    return db


def sizes(url: str) -> dict[str, tuple[int, int]]:
    """(rows, on-disk bytes with indexes and TOAST) of both logs."""
    with psycopg.connect(url) as conn:
        out = {}
        for table in ("events", "status_events"):
            row = conn.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}").fetchone()
            assert row is not None
            out[table] = (int(row[0]), int(row[1]))
        return out


async def bench_bytes(admin: str, *, sample: int, versions: int) -> None:
    url = fresh_database(admin)
    db = await connect(url)
    before = sizes(url)
    try:
        for _ in range(sample):
            created = await resources.create_single(
                db, {"consumer_name": "cluster1", "manifest": nginx(1)}, source="maestro"
            )
            row = created.row
            for version in range(1, versions + 1):
                if version > 1:
                    await resources.patch_single(db, row.id, {"version": 0, "manifest": nginx(version)})
                await accept(db, status_of(row.id, version, version), source_id="maestro")
    finally:
        await db.disconnect()
    after = sizes(url)
    with psycopg.connect(url) as conn:
        spec_row = conn.execute("SELECT avg(pg_column_size(e.*)) FROM events e").fetchone()
        status_row = conn.execute("SELECT avg(pg_column_size(s.*)) FROM status_events s").fetchone()
        payload = conn.execute("SELECT avg(pg_column_size(payload)) FROM resources").fetchone()
    assert spec_row is not None
    assert status_row is not None
    assert payload is not None
    for table, label, row_size in (("events", "spec version", spec_row[0]), ("status_events", "status", status_row[0])):
        rows = after[table][0] - before[table][0]
        disk = after[table][1] - before[table][1]
        print(
            f"bytes per {label:12}  row {float(row_size):7.0f}   on disk with indexes {disk / rows:7.0f}"
            f"   ({rows} rows)"
        )
    print(f"(for scale: the resource's spec itself, resources.payload, is {float(payload[0]):.0f} bytes)")


BULK = """
INSERT INTO resources (id, name, source, consumer_name, type, version, payload, status, created_at, updated_at)
SELECT 'r' || n, 'r' || n, 'maestro', 'cluster1', 'Single', 2, %(payload)s::jsonb,
       %(status)s::jsonb, now() - interval '1 hour', now()
FROM generate_series(1, %(n)s) n;
INSERT INTO events (source_id, consumer_name, event_type, version, payload, created_at, reconciled_date)
SELECT r.id, r.consumer_name, t.event_type, t.version,
       jsonb_build_object('name', r.name, 'source', r.source, 'type', r.type, 'created_at', r.created_at,
                          'updated_at', CASE t.version WHEN 1 THEN r.created_at ELSE r.updated_at END,
                          'deleted_at', r.deleted_at, 'actor', 'bench', 'spec', r.payload),
       CASE t.version WHEN 1 THEN r.created_at ELSE r.updated_at END, now()
FROM resources r, (VALUES ('Create', 1), ('Update', 2)) AS t (event_type, version) ORDER BY r.id, t.version;
INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name, status_event_type, version,
                           status)
SELECT r.id, r.source, r.type, r.consumer_name, 'StatusUpdate', 2, r.status FROM resources r, generate_series(1, 2);
ANALYZE;
"""


async def bench_rebuild(admin: str, *, count: int) -> None:
    url = fresh_database(admin)
    report = status_of("x", 2, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO consumers (id, name) VALUES ('c1', 'cluster1')")
        started = time.perf_counter()
        params = {
            "n": count,
            "payload": json.dumps({"data": {"manifests": [nginx(2)]}}),
            "status": json.dumps(report.stored()),
        }
        for statement in BULK.split(";"):
            if statement.strip():
                conn.execute(statement, params if "%(" in statement else None)  # type: ignore[arg-type]
        print(
            f"rebuild: {count} resources, {2 * count} spec events, {2 * count} status events written in"
            f" {time.perf_counter() - started:.1f}s"
        )
    db = store_db.database(url, max_size=1)
    await db.connect()
    try:
        async with store_db.connection(db) as conn:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        for apply in (False, True):
            if apply:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("UPDATE resources SET version = 7 WHERE id LIKE '%00'")
            cpu, started = server_cpu(backend), time.perf_counter()
            outcome = await rebuild.rebuild(db, apply=apply)
            elapsed, cpu = time.perf_counter() - started, server_cpu(backend) - cpu
            assert len(outcome.differences) == (count // 100 if apply else 0), outcome.differences[:3]
            per_cpu = f"{count / cpu:9.0f} per PostgreSQL CPU second" if cpu > 0 else "(PostgreSQL CPU not readable)"
            print(
                f"rebuild {'--apply  ' if apply else '--dry-run'}  {elapsed:6.2f}s  {count / elapsed:9.0f} resources/s"
                f"  {per_cpu}  {outcome.applied or ''}"
            )
    finally:
        await db.disconnect()


def server_cpu(pid: int) -> float:
    """CPU seconds of a local PostgreSQL backend (0 when it is not on this machine or not readable): the figure a
    loaded machine does not distort (parallel workers not included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_history(admin: str, *, versions: int, rounds: int, page_size: int) -> None:
    url = fresh_database(admin)
    db = await connect(url)
    row = (await resources.create_single(db, {"consumer_name": "cluster1", "manifest": nginx(1)}, source="maestro")).row
    for version in range(1, versions + 1):
        if version > 1:
            await resources.patch_single(db, row.id, {"version": 0, "manifest": nginx(version)})
        await accept(db, status_of(row.id, version, version), source_id="maestro")
    with psycopg.connect(url, autocommit=True) as conn:  # NB: other resources' events around it, analyzed
        report = status_of("x", 2, 1)
        params = {
            "n": 10_000,
            "payload": json.dumps({"data": {"manifests": [nginx(2)]}}),
            "status": json.dumps(report.stored()),
        }
        for statement in BULK.split(";"):
            if statement.strip():
                conn.execute(statement, params if "%(" in statement else None)  # type: ignore[arg-type]
    app = create_app(Settings.of(db_url=url, disable_auth=True), database=db)
    timings: list[float] = []
    cpu_times: list[float] = []
    single: list[float] = []
    async with app.router.lifespan_context(app) as state:

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state)  # type: ignore[call-overload]
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            path = f"/api/maestro/v1/resources/{row.id}"
            for _ in range(rounds):
                params: dict[str, str] = {"size": str(page_size)}
                while True:
                    started, cpu = time.perf_counter(), time.process_time()
                    response = await client.get(f"{path}/history", params=params)
                    timings.append(time.perf_counter() - started)
                    cpu_times.append(time.process_time() - cpu)
                    page = response.json()
                    assert response.status_code == 200, response.text
                    assert page["size"] > 0
                    if "next" not in page:
                        break
                    params = {"size": str(page_size), "after": page["next"]}
                for version in (1, versions // 2, versions):
                    started = time.perf_counter()
                    got = await client.get(path, params={"version": str(version)})
                    single.append(time.perf_counter() - started)
                    assert got.json()["version"] == version
    await db.disconnect()
    print(
        f"history of a resource with {versions} versions (1 status each), {page_size} per page: {len(timings)} pages,"
        f" p50 {1000 * percentile(timings, 0.5):.1f} ms, p99 {1000 * percentile(timings, 0.99):.1f} ms;"
        f" hub+client CPU per page p50 {1000 * percentile(cpu_times, 0.5):.1f} ms,"
        f" p99 {1000 * percentile(cpu_times, 0.99):.1f} ms"
    )
    print(
        f"GET ?version=N: {len(single)} calls, p50 {1000 * percentile(single, 0.5):.1f} ms,"
        f" p99 {1000 * percentile(single, 0.99):.1f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    with database_url(args.db_url) as admin:
        if "bytes" in args.parts:
            await bench_bytes(admin, sample=args.sample, versions=args.versions)
        if "rebuild" in args.parts:
            await bench_rebuild(admin, count=args.resources)
        if "history" in args.parts:
            for page_size in args.page_sizes:
                await bench_history(
                    admin, versions=args.history_versions, rounds=args.history_rounds, page_size=page_size
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="a PostgreSQL URL whose server may get new databases (default: throwaway)")
    parser.add_argument("--parts", default="bytes,rebuild,history", help="which parts to run (comma-separated)")
    parser.add_argument("--sample", type=int, default=200, help="bytes: resources written")
    parser.add_argument("--versions", type=int, default=5, help="bytes: versions (and statuses) per resource")
    parser.add_argument("--resources", type=int, default=100_000, help="rebuild: resources")
    parser.add_argument("--history-versions", type=int, default=1000, help="history: versions of the resource")
    parser.add_argument("--history-rounds", type=int, default=5, help="history: walks over every page")
    parser.add_argument(
        "--page-sizes", default="20,100", help="history: page sizes (the default is 20, the maximum 100)"
    )
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    args.page_sizes = [int(n) for n in args.page_sizes.split(",")]
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
