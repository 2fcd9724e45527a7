"""Benchmark: a PostgreSQL outage under REST traffic (issue 9, item 8).

Starts a throwaway PostgreSQL and ``maestro server`` (embedded broker, ``--log-level info``, its output to a
file), creates the consumer ``cluster1``, then sends ``--rate`` requests per second, open loop (a third each: a
create with a client-chosen id, a list, a get of a created resource). After ``--warmup`` seconds PostgreSQL is
stopped (``pg_ctl -m fast``, as an operator's restart) for ``--outage`` seconds and started again; traffic goes on
for ``--after`` seconds. A create that did not get 201/200 is retried with the same id and body until it does.

It prints the responses by status and phase, how long after PostgreSQL was back the first request succeeded and
``/healthcheck`` was ready again, the 503 latency, the hub's log (lines, warnings, tracebacks, bytes) and whether
any create made a second resource.

    .venv/bin/python bench/db_outage.py
    .venv/bin/python bench/db_outage.py --rate 100 --outage 8
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rest_creates import NGINX, fresh_database, hub_process  # noqa: E402

from tests.fixtures.postgres import Cluster  # noqa: E402

API = "/api/maestro/v1"


class Recorder:
    def __init__(self) -> None:
        self.phase = "before"
        self.by_phase: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.unavailable_ms: list[float] = []
        self.latency_ms: dict[str, list[float]] = collections.defaultdict(list)
        self.first_ok_after: float | None = None
        self.back_at: float | None = None

    def record(self, outcome: str, started: float) -> None:
        took = time.monotonic() - started
        self.by_phase[self.phase][outcome] += 1
        self.latency_ms[self.phase].append(took * 1000)
        if outcome == "503":
            self.unavailable_ms.append(took * 1000)
        if self.back_at is not None and self.first_ok_after is None and outcome in ("200", "201"):
            self.first_ok_after = time.monotonic() - self.back_at


async def traffic(api: httpx.AsyncClient, rec: Recorder, *, rate: float, until: asyncio.Event) -> tuple[int, int]:
    """Open-loop traffic until ``until`` is set; returns (creates intended, creates that needed a retry)."""
    created: list[str] = []
    pending: collections.deque[dict[str, Any]] = collections.deque()
    intended = retried = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(kind: str) -> None:
        nonlocal intended, retried
        started = time.monotonic()
        try:
            if kind == "create":
                if pending:
                    body = pending.popleft()
                    retried += 1
                else:
                    manifest = copy.deepcopy(NGINX)
                    manifest["metadata"]["name"] = f"nginx-{uuid.uuid4().hex[:8]}"
                    body = {"id": str(uuid.uuid4()), "consumer_name": "cluster1", "manifest": manifest}
                    intended += 1
                response = await api.post("/resources", json=body)
                if response.status_code in (200, 201):
                    created.append(body["id"])
                else:
                    pending.append(body)
            elif kind == "list":
                response = await api.get("/resources", params={"size": 10})
            else:
                rid = created[-1] if created else str(uuid.uuid4())
                response = await api.get(f"/resources/{rid}")
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        rec.record(outcome, started)

    kinds = ("create", "list", "get")
    n = 0
    start = time.monotonic()
    while not until.is_set():
        task = asyncio.create_task(one(kinds[n % 3]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    while pending:  # NB: every create the client meant to make, retried with its id until it is answered.
        await one("create")
    await asyncio.gather(*tasks)
    return intended, retried


async def healthy_after(health: str, back_at: float) -> float:
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            try:
                if (await client.get(f"{health}/healthcheck")).status_code == 200:
                    return time.monotonic() - back_at
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace, cluster: Cluster, rest: str, health: str, db_url: str) -> Recorder:
    rec = Recorder()
    async with httpx.AsyncClient(base_url=rest + API, timeout=30, limits=httpx.Limits(max_connections=64)) as api:
        assert (await api.post("/consumers", json={"name": "cluster1"})).status_code == 201
        stop = asyncio.Event()
        load = asyncio.create_task(traffic(api, rec, rate=args.rate, until=stop))
        await asyncio.sleep(args.warmup)
        rec.phase = "outage"
        down_at = time.monotonic()
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(max(0.0, args.outage - (time.monotonic() - down_at)))
        await asyncio.to_thread(cluster.start)
        rec.back_at = time.monotonic()
        rec.phase = "after"
        ready_after = asyncio.create_task(healthy_after(health, rec.back_at))
        await asyncio.sleep(args.after)
        stop.set()
        intended, retried = await load
        ready = await ready_after
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT name) FROM resources").fetchone()
    assert rows is not None
    print(f"rate {args.rate}/s, outage {args.outage:.0f}s (pg_ctl stop -m fast .. start), {args.after:.0f}s after")
    for phase in ("before", "outage", "after"):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(rec.by_phase[phase].items()))
        lat = sorted(rec.latency_ms[phase])
        print(f"  {phase:7} {counts}; latency p50 {lat[len(lat) // 2]:.0f} ms, p99 {lat[int(len(lat) * 0.99)]:.0f} ms")
    lat = sorted(rec.unavailable_ms)
    if lat:
        print(f"  503 latency ms: p50 {lat[len(lat) // 2]:.1f}, p99 {lat[int(len(lat) * 0.99)]:.1f}, max {lat[-1]:.1f}")
    first = f"{rec.first_ok_after:.2f}s" if rec.first_ok_after is not None else "never"
    print(f"  after PostgreSQL was back: first success {first}, /healthcheck 200 after {ready:.2f}s")
    print(f"  creates: {intended} intended, {retried} retries with the same id, {rows[0]} resources ({rows[1]} names)")
    return rec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--outage", type=float, default=8.0, help="seconds PostgreSQL is down")
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args()
    cluster = Cluster()
    cluster.start()
    try:
        db_url = fresh_database(cluster.server.dsn())
        log = Path(tempfile.mkdtemp(prefix="maestro-bench-outage-")) / "hub.log"
        hub_args = ["--db-url", db_url, "--log-level", "info", "--heartbeat-interval", "1"]
        with hub_process(hub_args, log=log) as (_, ports):
            asyncio.run(
                measure(args, cluster, f"http://127.0.0.1:{ports.rest}", f"http://127.0.0.1:{ports.health}", db_url)
            )
        text = log.read_text(errors="replace")
        lines = text.splitlines()
        warnings = [line for line in lines if " WARNING " in line]
        print(
            f"  hub log: {len(lines)} lines, {len(warnings)} WARNING, {text.count('Traceback')} tracebacks,"
            f" {len(text.encode())} bytes ({log})"
        )
        for line in lines:
            if "database unavailable" in line or "database available again" in line:
                print("   ", line)
        for line in warnings:
            if "database unavailable" not in line:
                print("    other warning:", line[:200])
    finally:
        cluster.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
