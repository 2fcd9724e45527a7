"""Benchmark: the hub's CPU per published resource on the dispatch side, in rounds of a fixed size.

Starts a throwaway PostgreSQL (as ``rest_creates.py`` does) and migrates a fresh database, then runs in this one
process what the hub process runs to deliver spec events: the embedded broker (amqtt; or a throwaway mosquitto with
``--mosquitto``, outside this process as in production), the MQTT adapter and the dispatcher (no coalescing window:
each round is swept when it is written). Then, ``--rounds`` times: create ``--batch`` single resources (the README's
nginx Deployment) through the service layer as REST does, wake the dispatcher, and wait until all of them are
published, acknowledged and reconciled. The creates' own CPU is measured and subtracted, so what is printed is the
dispatch side's CPU per resource at a fixed batch size, which does not depend on how fast a busy machine lets the
writers go (``rest_creates.py``'s hub-process column does: slower writers mean smaller batches).

PostgreSQL's CPU (the postmaster and all its children: backends, WAL writer, autovacuum) is measured the same way:
its CPU during the creates is subtracted from its CPU over the whole run. Work the dispatcher leaves for later
(the marking of a round that rides on the next round's sweep) may fall into the next round's creates; the
``total`` columns (creates + dispatch per resource) are the ones that compare any two versions fairly.

    .venv/bin/python bench/dispatch_cpu.py                        # batches of 1, 8 and 32, embedded broker
    .venv/bin/python bench/dispatch_cpu.py --mosquitto --batch 8 --rounds 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest_creates import NGINX, fresh_database, throwaway_postgres  # noqa: E402
from bench.vs_apiserver import family_cpu, postmaster_pid  # noqa: E402
from protocol import mqtt, mqtt_config  # noqa: E402
from server.dispatch import embedded_mqtt, metrics, publisher  # noqa: E402
from server.services import consumers, resources  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.store import db as store_db  # noqa: E402
from tests.fixtures.postgres import free_port  # noqa: E402

SOURCE = "maestro"


@dataclasses.dataclass
class Cpu:
    """Milliseconds per resource: this process (the hub side) and PostgreSQL, total and the creates' share."""

    hub_total: float
    hub_writes: float
    pg_total: float
    pg_writes: float

    @property
    def hub(self) -> float:
        return self.hub_total - self.hub_writes

    @property
    def pg(self) -> float:
        return self.pg_total - self.pg_writes


def published() -> float:
    return sum(metrics.SPEC_PUBLISHED.labels(a)._value.get() for a in ("create_request", "update_request"))


async def measure(db_url: str, config: mqtt_config.MQTTConfig, *, batch: int, rounds: int, tag: str) -> Cpu:
    """CPU ms per resource over ``rounds`` rounds of ``batch`` creates."""
    postmaster = postmaster_pid(db_url)
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
                writes = pg_writes = probes = 0.0
                pg_start = family_cpu(postmaster)
                start = time.process_time()
                for r in range(rounds):
                    probe = time.process_time()
                    pg_before = family_cpu(postmaster)
                    before = time.process_time()
                    probes += before - probe
                    for i in range(batch):
                        manifest = copy.deepcopy(NGINX)
                        manifest["metadata"]["name"] = name = f"nginx-{tag}-{r}-{i}"
                        body = {"consumer_name": "cluster1", "name": name, "manifest": manifest}
                        await resources.create_single(database, body, source=SOURCE)
                    probe = time.process_time()
                    writes += probe - before
                    pg_writes += family_cpu(postmaster) - pg_before
                    probes += time.process_time() - probe
                    target = published() + batch
                    dispatcher.wake.set()
                    while published() < target:  # noqa: ASYNC110 - the same light poll for every version measured
                        await asyncio.sleep(0.001)
                total = time.process_time() - start - probes
                pg_total = family_cpu(postmaster) - pg_start
            finally:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        per = 1000 / (batch * rounds)
        return Cpu(total * per, writes * per, pg_total * per, pg_writes * per)
    finally:
        await database.disconnect()


def _each(runs: list[Cpu], of: Callable[[Cpu], float]) -> str:
    return " ".join(f"{of(c):.3f}" for c in runs)


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
    print("CPU ms per resource, each run: dispatch = total - creates; hub = this process, pg = PostgreSQL", flush=True)
    print(f"{'batch':>5} {'rounds':>6}  {'hub dispatch':>14} {'hub total':>14} {'pg dispatch':>14} {'pg total':>14}")
    for batch in batches:
        runs: list[Cpu] = []
        for n in range(repeat):
            url = fresh_database(admin)
            if config is None:
                async with embedded_broker() as embedded:
                    runs.append(await measure(url, embedded, batch=batch, rounds=rounds, tag=f"b{batch}n{n}"))
            else:
                runs.append(await measure(url, config, batch=batch, rounds=rounds, tag=f"b{batch}n{n}"))

        print(
            f"{batch:>5} {rounds:>6}  {_each(runs, lambda c: c.hub):>14} {_each(runs, lambda c: c.hub_total):>14}"
            f" {_each(runs, lambda c: c.pg):>14} {_each(runs, lambda c: c.pg_total):>14}",
            flush=True,
        )


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
