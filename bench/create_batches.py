"""Benchmark: what one create costs PostgreSQL, written alone or in a batch (the group commit's statement).

Starts a throwaway PostgreSQL (as ``rest_creates.py`` does) or uses ``--db-url``, migrates a fresh database, creates
the consumer ``cluster1``, then writes ``--rows`` resource bundles (the README's nginx Deployment, each its own
name) in batches of each ``--sizes`` value, one statement after the other on one connection: a batch of 1 is the
single-row statement (``store.resources.insert``), larger ones ``store.resources.insert_many``. It prints, per
batch size, rows/s and the CPU per row of the PostgreSQL backend that ran them (``/proc``) and of this process
(asyncpg encoding and decoding: the hub's share of the statement). Rounds alternate the sizes (``--rounds``) and
the table of medians follows.

    .venv/bin/python bench/create_batches.py
    .venv/bin/python bench/create_batches.py --rows 4000 --sizes 1,2,4,8,16,32,64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest_creates import NGINX, cpu_seconds, fresh_database, throwaway_postgres  # noqa: E402
from server.store import db as store_db  # noqa: E402
from server.store import resources  # noqa: E402


def row(tag: str, i: int) -> resources.NewRow:
    rid = str(uuid.uuid4())
    name = f"nginx-{tag}-{i}"
    manifest = {**NGINX, "metadata": {"name": name, "namespace": "default"}}
    payload = {
        "metadata": {"uid": rid, "name": name, "namespace": "cluster1"},
        "data": {"manifests": [manifest], "deleteOption": {"propagationPolicy": "Foreground"}, "manifestConfigs": []},
    }
    return resources.NewRow(rid, name, "maestro", "cluster1", "Bundle", payload, "anonymous")


async def measure(url: str, *, size: int, rows: int, tag: str) -> dict[str, float]:
    database = store_db.database(url, max_size=1)
    await database.connect()
    try:
        async with store_db.connection(database) as conn:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            batches = [[row(tag, i + j) for j in range(size)] for i in range(0, rows, size)]
            start, own, pg = time.perf_counter(), time.process_time(), cpu_seconds(backend)
            for batch in batches:
                if size == 1:
                    await resources.insert(conn, batch[0])
                else:
                    assert all(await resources.insert_many(conn, batch))
            elapsed = time.perf_counter() - start
            own, pg = time.process_time() - own, cpu_seconds(backend) - pg
    finally:
        await database.disconnect()
    written = sum(len(b) for b in batches)
    return {
        "size": size,
        "rows_per_s": written / elapsed,
        "pg_ms": pg / written * 1000,
        "client_ms": own / written * 1000,
    }


def _line(r: dict[str, float]) -> str:
    return f"{r['size']:>5.0f} {r['rows_per_s']:>8.0f} {r['pg_ms']:>18.3f} {r['client_ms']:>22.3f}"


HEADER = f"{'batch':>5} {'rows/s':>8} {'PostgreSQL ms/row':>18} {'this process ms/row':>22}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="a PostgreSQL URL whose server may get a new database (default: throwaway)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per batch size per round")
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the sizes (alternated)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, float]] = []
    print(HEADER, flush=True)
    with contextlib.ExitStack() as stack:
        admin = args.db_url or stack.enter_context(throwaway_postgres())
        url = fresh_database(admin)

        async def run() -> None:
            database = store_db.database(url, max_size=1)
            await database.connect()
            async with store_db.connection(database) as conn:
                await conn.execute("INSERT INTO consumers (id, name) VALUES ($1, 'cluster1')", str(uuid.uuid4()))
            await database.disconnect()
            await measure(url, size=8, rows=400, tag="warmup")
            for n in range(args.rounds):
                for size in sizes:
                    result = await measure(url, size=size, rows=args.rows, tag=f"r{n}s{size}")
                    print(_line(result), flush=True)
                    results.append(result)

        asyncio.run(run())
    if args.rounds > 1:
        print(f"\nmedians of {args.rounds} rounds\n{HEADER}")
        for size in sizes:
            same = [r for r in results if r["size"] == size]
            print(_line({k: statistics.median(r[k] for r in same) for k in same[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
