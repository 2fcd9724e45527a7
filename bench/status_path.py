"""Benchmark: the status path's writes through the hub's own entry points (issue 9, item 6).

Starts (or uses) a PostgreSQL, migrates a fresh database, creates ``--resources`` single resources of one consumer,
and times, ``--concurrency`` at a time:

1. **statuses** — one agent status per resource, decoded from a CloudEvent and stored by the ingest
   (``Ingest.decode_status`` + ``Ingest.store_status``): statuses/s;
2. **agent deletes** — half the resources marked deleting, then the agent's ``Deleted=True`` for each: completions/s;
3. **retired deletes** — the other half marked deleting and back-dated, then one maintenance round retires them all
   (``Maintenance.retire_stale_deletes``, one transaction each, one at a time as in production): retirements/s.

It uses only entry points that exist before and after the status use cases moved to ``server/services/status.py``,
so the same file runs in an older checkout for a before/after comparison.

    .venv/bin/python bench/status_path.py                    # throwaway PostgreSQL
    .venv/bin/python bench/status_path.py --resources 5000 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest_creates import NGINX, fresh_database, throwaway_postgres  # noqa: E402
from protocol import events, sequence, types  # noqa: E402
from server.dispatch.ingest import Ingest  # noqa: E402
from server.dispatch.maintenance import Maintenance  # noqa: E402
from server.services import consumers, resources  # noqa: E402
from server.settings import MaintenanceSettings, Settings  # noqa: E402
from server.store import db as store_db  # noqa: E402

SEQ = sequence.SequenceGenerator()
CONSUMER = "cluster1"


def status_event(rid: str, condition: str) -> Any:
    conditions = [{"type": condition, "status": "True", "reason": "x", "message": "", "lastTransitionTime": "x"}]
    return events.make_event(
        type=types.manifestbundle_type("status", types.UPDATE_REQUEST),
        source=f"{CONSUMER}-work-agent",
        data={"conditions": conditions, "resourceStatus": []},
        extensions={
            types.EXT_RESOURCE_ID: rid,
            types.EXT_RESOURCE_VERSION: 1,
            types.EXT_CLUSTER_NAME: CONSUMER,
            types.EXT_ORIGINAL_SOURCE: "maestro",
            types.EXT_SEQUENCE_ID: SEQ.next(),
        },
    )


async def timed(label: str, items: list[str], work: Callable[[str], Awaitable[Any]], concurrency: int) -> None:
    queue = list(items)

    async def worker() -> None:
        while queue:
            await work(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    line(label, len(items), time.perf_counter() - started)


def line(label: str, count: int, elapsed: float) -> None:
    print(f"{label:<16} {count:>6} in {elapsed:6.2f} s   {count / elapsed:8.0f}/s")


async def run(url: str, *, count: int, concurrency: int) -> None:
    db = store_db.database(url, max_size=concurrency + 2)
    await db.connect()
    try:
        await consumers.create(db, {"name": CONSUMER})
        ids = [
            (await resources.create_single(db, {"consumer_name": CONSUMER, "manifest": NGINX}, source="maestro")).row.id
            for _ in range(count)
        ]
        ingest = Ingest(db, None, Settings(), source_events="")  # type: ignore[arg-type]

        async def report(rid: str, condition: str) -> None:
            await ingest.store_status(ingest.decode_status(CONSUMER, status_event(rid, condition)))

        await timed("statuses", ids, lambda rid: report(rid, "Applied"), concurrency)
        confirmed, retired = ids[: count // 2], ids[count // 2 :]
        for rid in ids:
            await resources.mark_deleting(db, rid)
        await timed("agent deletes", confirmed, lambda rid: report(rid, "Deleted"), concurrency)
        async with store_db.transaction(db) as conn:
            await conn.execute("UPDATE resources SET deleted_at = deleted_at - interval '2 hours'")
        repairs = Maintenance(db, MaintenanceSettings(stale_delete_event_threshold=3600, maintenance_page_size=count))
        started = time.perf_counter()
        assert await repairs.retire_stale_deletes() == len(retired)
        line("retired deletes", len(retired), time.perf_counter() - started)
    finally:
        await db.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", help="a PostgreSQL URL whose server may get new databases (default: throwaway)")
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("server").setLevel(logging.ERROR)  # NB: a retirement logs a warning per resource.
    if args.db_url:
        asyncio.run(run(fresh_database(args.db_url), count=args.resources, concurrency=args.concurrency))
        return
    with throwaway_postgres() as admin:
        asyncio.run(run(fresh_database(admin), count=args.resources, concurrency=args.concurrency))


if __name__ == "__main__":
    main()
