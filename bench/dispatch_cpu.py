"""Benchmark: the hub's CPU per published resource on the dispatch side, in rounds of a fixed size.

Starts a throwaway PostgreSQL (as ``rest_creates.py`` does) and migrates a fresh database, then runs in this one
process what the hub process runs to deliver spec events: the embedded broker (amqtt; or a throwaway mosquitto with
``--mosquitto``, outside this process as in production), the MQTT adapter and the dispatcher (no coalescing window:
each round is swept when it is written). Then, ``--rounds`` times: create ``--batch`` single resources (the README's
nginx Deployment) through the service layer as REST does, wake the dispatcher, and wait until all of them are
published, acknowledged and reconciled. The creates' own CPU is measured and subtracted, so what is printed is the
dispatch side's CPU per resource at a fixed batch size, which does not depend on how fast a busy machine lets the
writers go (``rest_creates.py``'s hub-process column does: slower writers mean smaller batches).

    .venv/bin/python bench/dispatch_cpu.py                        # batches of 1, 8 and 32, embedded broker
    .venv/bin/python bench/dispatch_cpu.py --mosquitto --batch 8 --rounds 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest_creates import NGINX, fresh_database, throwaway_postgres  # noqa: E402
from protocol import mqtt, mqtt_config  # noqa: E402
from server.dispatch import embedded_mqtt, metrics, publisher  # noqa: E402
from server.services import consumers, resources  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.store import db as store_db  # noqa: E402
from tests.fixtures.postgres import free_port  # noqa: E402

SOURCE = "maestro"


def published() -> float:
    return sum(metrics.SPEC_PUBLISHED.labels(a)._value.get() for a in ("create_request", "update_request"))


async def measure(db_url: str, config: mqtt_config.MQTTConfig, *, batch: int, rounds: int, tag: str) -> float:
    """CPU ms per resource of the dispatch side over ``rounds`` rounds of ``batch`` creates."""
    database = store_db.database(db_url, max_size=20)
    await database.connect()
    try:
        await consumers.create(database, {"name": "cluster1"})
        async with mqtt.Broker(config, client_id=f"bench-{tag}") as broker:
            settings = Settings.of(source_id=SOURCE, dispatch_poll_interval=3600, dispatch_coalesce=0)
            dispatcher = publisher.Dispatcher(
                database, broker, settings, dsn=None, source_events=config.topics.source_events
            )
            running = asyncio.create_task(dispatcher.run())
            try:
                writes = 0.0
                start = time.process_time()
                for r in range(rounds):
                    before = time.process_time()
                    for i in range(batch):
                        manifest = copy.deepcopy(NGINX)
                        manifest["metadata"]["name"] = name = f"nginx-{tag}-{r}-{i}"
                        body = {"consumer_name": "cluster1", "name": name, "manifest": manifest}
                        await resources.create_single(database, body, source=SOURCE)
                    writes += time.process_time() - before
                    target = published() + batch
                    dispatcher.wake.set()
                    while published() < target:  # noqa: ASYNC110 - the same light poll for every version measured
                        await asyncio.sleep(0.001)
                total = time.process_time() - start
            finally:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        return (total - writes) / (batch * rounds) * 1000
    finally:
        await database.disconnect()


@contextlib.asynccontextmanager
async def embedded_broker() -> contextlib.AsyncIterator[mqtt_config.MQTTConfig]:
    with tempfile.TemporaryDirectory(prefix="maestro-bench-amqtt-") as directory:
        broker = embedded_mqtt.EmbeddedBroker(data_dir=Path(directory), port=free_port())
        await broker.start()
        try:
            yield broker.config(SOURCE)
        finally:
            await broker.stop()


async def run(
    admin: str, *, batches: list[int], rounds: int, repeat: int, config: mqtt_config.MQTTConfig | None
) -> None:
    print(f"{'batch':>5} {'rounds':>6} {'dispatch CPU ms/resource (each run)':>40} {'median':>7}", flush=True)
    for batch in batches:
        runs = []
        for n in range(repeat):
            url = fresh_database(admin)
            if config is None:
                async with embedded_broker() as embedded:
                    runs.append(await measure(url, embedded, batch=batch, rounds=rounds, tag=f"b{batch}n{n}"))
            else:
                runs.append(await measure(url, config, batch=batch, rounds=rounds, tag=f"b{batch}n{n}"))
        each = " ".join(f"{x:.3f}" for x in runs)
        print(f"{batch:>5} {rounds:>6} {each:>40} {statistics.median(runs):>7.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="a PostgreSQL URL whose server may get new databases (default: throwaway)")
    parser.add_argument("--batch", default="1,8,32", help="comma-separated resources per round")
    parser.add_argument("--rounds", type=int, default=200, help="rounds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per batch size (a fresh database each)")
    parser.add_argument("--mosquitto", action="store_true", help="a throwaway mosquitto instead of the embedded broker")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    with contextlib.ExitStack() as stack:
        admin = args.db_url or stack.enter_context(throwaway_postgres())
        config = None
        if args.mosquitto:
            from bench.dispatch_e2e import throwaway_mosquitto  # NB: here: that module imports rest_creates

            config = mqtt_config.load(stack.enter_context(throwaway_mosquitto()))
        asyncio.run(run(admin, batches=batches, rounds=args.rounds, repeat=args.repeat, config=config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
