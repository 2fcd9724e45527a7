"""Benchmark: end-to-end dispatch, write → hub → MQTT → simulated agents → status → database.

Starts a throwaway PostgreSQL (or uses ``--db-url``) and a mosquitto on a free port (or uses ``--mqtt-config``),
runs ``maestro server`` in a subprocess against both, and runs N simulated agents (``agent/simulator.py``) in
this process. Each run creates N x M single resources through the service layer (the same code path as REST,
minus HTTP) at a target rate (0 = as fast as 8 writers go), and prints end-to-end creates/s, p50/p99 of write →
agent receipt and write → status stored, status ingest/s, and the hub's peak RSS and CPU per resource.

    .venv/bin/python bench/dispatch_e2e.py                            # 10 consumers x 200, unthrottled + 500/s
    .venv/bin/python bench/dispatch_e2e.py --consumers 10 --resources 500 --rates 0,250,500,1000
    .venv/bin/python bench/dispatch_e2e.py --profile /tmp/hub.prof     # cProfile the hub process
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudevents.core.v1.event import CloudEvent  # noqa: E402

from agent.simulator import SimulatedAgent  # noqa: E402
from bench.rest_creates import cpu_seconds, fresh_database, hub_process, percentile, throwaway_postgres  # noqa: E402
from protocol import mqtt_config, types  # noqa: E402
from server.services import consumers, resources  # noqa: E402
from server.store import db as store_db  # noqa: E402
from tests.fixtures.mosquitto import MosquittoServer  # noqa: E402

SOURCE = "maestro"


@contextlib.contextmanager
def throwaway_mosquitto() -> Iterator[Path]:
    """A mosquitto on a free port configured as the test fixture does; yields a hub config file for it."""
    with mosquitto_broker() as (config, _):
        yield config


@contextlib.contextmanager
def mosquitto_broker() -> Iterator[tuple[Path, MosquittoServer]]:
    """:func:`throwaway_mosquitto`, also yielding the running broker (its ``pid``)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    directory = Path(tempfile.mkdtemp(prefix="maestro-bench-mqtt-"))
    broker = MosquittoServer(binary=binary, directory=directory)
    broker.start()
    try:
        config = directory / "hub-mqtt.yaml"
        config.write_text(
            f"brokerHost: {broker.host}:{broker.port}\ntopics:\n"
            f"  sourceEvents: sources/{SOURCE}/consumers/+/sourceevents\n"
            f"  agentEvents: sources/{SOURCE}/consumers/+/agentevents\n"
        )
        yield config, broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def hub(db_url: str, config_file: Path, *, profile: str | None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else None
    args = [
        "--db-url",
        db_url,
        "--mqtt-config-file",
        str(config_file),
        "--client-id",
        f"bench-hub-{uuid.uuid4().hex[:6]}",
    ]
    with hub_process(args, python=python) as (proc, ports):
        yield proc, ports.metrics


def published_histogram(metrics_port: int) -> dict[float, float]:
    """The hub's write → broker-acknowledged histogram: cumulative count per upper bound (seconds)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("maestro_spec_write_to_published_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of what was observed between two scrapes."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0
    for bound, cumulative in counts:
        if total and cumulative >= q * total:
            return bound
    return float("nan")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Receipts:
    """First receipt time of each (resource id, version), recorded in the agents' event hook."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.arrived = asyncio.Event()

    def hook(self, event: CloudEvent) -> None:
        if types.event_type(event).subresource != types.SPEC:
            return
        rid = event.get_extension(types.EXT_RESOURCE_ID)
        if isinstance(rid, str) and rid not in self.at:
            self.at[rid] = time.time()
            self.arrived.set()


async def run(
    database: Any,
    receipts: Receipts,
    hub_pid: int,
    metrics_port: int,
    *,
    consumer_names: list[str],
    per_consumer: int,
    rate: float,
) -> dict[str, float]:
    total = per_consumer * len(consumer_names)
    tag = uuid.uuid4().hex[:6]
    written: dict[str, float] = {}
    jobs = [(consumer_names[i % len(consumer_names)], f"cm-{tag}-{i}") for i in range(total)]
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "bench"}, "data": {"k": "v"}}

    async def create(consumer: str, name: str) -> None:
        body = {"consumer_name": consumer, "manifest": {**manifest, "metadata": {"name": name, "namespace": "b"}}}
        row = (await resources.create_single(database, body, source=SOURCE)).row
        written[row.id] = time.time()

    hub_cpu, my_cpu = cpu_seconds(hub_pid), time.process_time()
    histogram = await asyncio.to_thread(published_histogram, metrics_port)
    start = time.time()
    if rate > 0:
        pending: set[asyncio.Task[None]] = set()
        for i, (consumer, name) in enumerate(jobs):
            delay = start + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(create(consumer, name))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    else:
        queue = list(reversed(jobs))

        async def writer() -> None:
            while queue:
                await create(*queue.pop())

        await asyncio.gather(*(writer() for _ in range(8)))
    writes_done = time.time()
    peak_rss = rss_kib(hub_pid)
    async with asyncio.timeout(300):
        while any(rid not in receipts.at for rid in written):
            receipts.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await receipts.arrived.wait()
            peak_rss = max(peak_rss, rss_kib(hub_pid))
        delivered = max(receipts.at[rid] for rid in written)
        ids = list(written)
        while True:
            async with store_db.connection(database) as conn:
                stored = await conn.fetch(
                    "SELECT resource_id, extract(epoch FROM min(created_at))::float8 AS at FROM status_events"
                    " WHERE resource_id = ANY($1::text[]) AND status_event_type = 'StatusUpdate' GROUP BY 1",
                    ids,
                )
            peak_rss = max(peak_rss, rss_kib(hub_pid))
            if len(stored) == total:
                break
            await asyncio.sleep(0.1)
    status_at = {r["resource_id"]: r["at"] for r in stored}
    published = await asyncio.to_thread(published_histogram, metrics_port)
    hub_cpu, my_cpu = cpu_seconds(hub_pid) - hub_cpu, time.process_time() - my_cpu
    to_agent = sorted(receipts.at[rid] - written[rid] for rid in written)
    to_status = sorted(status_at[rid] - written[rid] for rid in written)
    last_status = max(status_at.values())
    return {
        "rate": rate,
        "resources": total,
        "writes_per_s": total / (writes_done - start),
        "e2e_per_s": total / (delivered - start),
        "agent_p50_ms": percentile(to_agent, 0.5) * 1000,
        "agent_p99_ms": percentile(to_agent, 0.99) * 1000,
        "status_p50_ms": percentile(to_status, 0.5) * 1000,
        "status_p99_ms": percentile(to_status, 0.99) * 1000,
        "status_per_s": total / (last_status - start),
        "hub_published_p50_ms": bucket_quantile(histogram, published, 0.5) * 1000,
        "hub_published_p99_ms": bucket_quantile(histogram, published, 0.99) * 1000,
        "hub_cpu_ms": hub_cpu / total * 1000,
        "bench_cpu_ms": my_cpu / total * 1000,
        "peak_rss_mib": max(peak_rss, rss_kib(hub_pid, "VmHWM")) / 1024,
    }


async def bench(
    db_url: str,
    agent_config: mqtt_config.MQTTConfig,
    hub_pid: int,
    metrics_port: int,
    *,
    n: int,
    m: int,
    rates: list[float],
) -> list[dict[str, float]]:
    database = store_db.database(db_url, max_size=20)
    await database.connect()
    receipts = Receipts()
    names = [f"cluster{i}" for i in range(n)]
    try:
        for name in names:
            await consumers.create(database, {"name": name})
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                agent = SimulatedAgent(consumer=name, config=agent_config, source=SOURCE, on_event=receipts.hook)
                await stack.enter_async_context(agent)
            await asyncio.sleep(1)  # NB: let the agents' spec resyncs settle
            await run(database, receipts, hub_pid, metrics_port, consumer_names=names, per_consumer=5, rate=0)
            return [
                await run(database, receipts, hub_pid, metrics_port, consumer_names=names, per_consumer=m, rate=rate)
                for rate in rates
            ]
    finally:
        await database.disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="a PostgreSQL URL whose server may get a new database (default: throwaway)")
    parser.add_argument("--mqtt-config", help="hub broker config file (default: a throwaway mosquitto)")
    parser.add_argument("--consumers", type=int, default=10, help="simulated consumers (agents)")
    parser.add_argument("--resources", type=int, default=200, help="resources per consumer per run")
    parser.add_argument("--rates", default="0,500", help="comma-separated target creates/s per run (0: unthrottled)")
    parser.add_argument("--profile", help="run the hub under cProfile and write the stats here")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    with contextlib.ExitStack() as stack:
        admin = args.db_url or stack.enter_context(throwaway_postgres())
        url = fresh_database(admin)
        config_file = Path(args.mqtt_config) if args.mqtt_config else stack.enter_context(throwaway_mosquitto())
        agent_config = mqtt_config.load(config_file)
        proc, metrics_port = stack.enter_context(hub(url, config_file, profile=args.profile))
        rows = asyncio.run(
            bench(url, agent_config, proc.pid, metrics_port, n=args.consumers, m=args.resources, rates=rates)
        )

    print(f"{args.consumers} consumers x {args.resources} resources per run; times in ms; CPU per resource")
    print(
        f"{'target/s':>8} {'writes/s':>8} {'e2e/s':>7} {'agent p50':>9} {'agent p99':>9} {'status p50':>10}"
        f" {'status p99':>10} {'status/s':>8} {'hub CPU':>7} {'bench CPU':>9} {'hub peak RSS':>12}"
        f" {'hub published p50/p99 (bucket)':>30}"
    )
    for r in rows:
        target = "max" if not r["rate"] else f"{r['rate']:.0f}"
        print(
            f"{target:>8} {r['writes_per_s']:>8.0f} {r['e2e_per_s']:>7.0f} {r['agent_p50_ms']:>9.1f}"
            f" {r['agent_p99_ms']:>9.1f} {r['status_p50_ms']:>10.1f} {r['status_p99_ms']:>10.1f}"
            f" {r['status_per_s']:>8.0f} {r['hub_cpu_ms']:>7.2f} {r['bench_cpu_ms']:>9.2f}"
            f" {r['peak_rss_mib']:>9.0f} MiB"
            f" {r['hub_published_p50_ms']:>14.0f} / {r['hub_published_p99_ms']:.0f}"
        )
    if args.profile:
        print(f"hub profile written to {args.profile} (python -m pstats {args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
