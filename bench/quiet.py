"""Benchmark: a hub at rest: CPU of the hub and of PostgreSQL while nothing changes.

Starts a throwaway PostgreSQL (``fsync=off``) and a mosquitto on a free port, loads ``--bundles`` bundles over
``--consumers`` consumers with COPY (``bench/startup.py``'s loader), starts ``maestro server`` in a subprocess and
one simulated agent per consumer (``agent/simulator.py``, in this process), waits until every agent holds its
works and the hub and PostgreSQL are idle, lets autovacuum do its round after the agents' status storm
(``--settle``), then measures ``--window`` seconds of rest: the CPU of the hub process and of the
whole PostgreSQL cluster (postmaster and every child: backends, checkpointer, WAL writer, autovacuum) as a share
of one core, and the writing transactions (heartbeats; reads such as polls and pings take no transaction id).

    .venv/bin/python bench/quiet.py                                  # 6,000 bundles, 10 agents, 60 s
    .venv/bin/python bench/quiet.py --code /tmp/maestro-before       # the same, with another checkout's hub
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.simulator import SimulatedAgent  # noqa: E402
from bench.dispatch_e2e import throwaway_mosquitto  # noqa: E402
from bench.rest_creates import cpu_seconds, fresh_database, hub_process, throwaway_postgres  # noqa: E402
from bench.startup import IDLE_CPU, IDLE_SECONDS, SOURCE, load  # noqa: E402
from protocol import mqtt_config  # noqa: E402


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster, its live children, and the children it reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = _stat(postmaster)
    total = sum(int(f) for f in fields[11:15])  # NB: utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            child = _stat(int(entry.name))
            if int(child[1]) == postmaster:
                total += int(child[11]) + int(child[12])
    return total / tick


def postmaster_of(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(_stat(int(row[0]))[1])


def xids(db_url: str) -> int:
    """Transaction ids assigned so far: one per writing transaction (read-only ones take none; neither does this).

    NB: not ``pg_stat_database.xact_commit``: backends flush those counters up to a minute late."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


async def until_idle(
    hub_pid: int, postmaster: int, agents: list[SimulatedAgent], per_agent: int, timeout: float
) -> None:
    """Until every agent holds its works and neither the hub nor PostgreSQL has been busy for a while."""
    deadline = time.monotonic() + timeout
    quiet, last, last_at = 0, cpu_seconds(hub_pid) + cluster_cpu(postmaster), time.monotonic()
    while quiet < IDLE_SECONDS or any(len(a.works) < per_agent for a in agents):
        await asyncio.sleep(1.0)
        cpu, at = cpu_seconds(hub_pid) + cluster_cpu(postmaster), time.monotonic()
        quiet = quiet + 1 if (cpu - last) / (at - last_at) < IDLE_CPU else 0
        last, last_at = cpu, at
        if at > deadline:
            raise RuntimeError(f"not at rest within {timeout:.0f} s")


async def measure(
    db_url: str,
    agent_config: mqtt_config.MQTTConfig,
    hub_pid: int,
    *,
    consumers: int,
    per_agent: int,
    window: float,
    settle: float,
) -> dict[str, float]:
    names = [f"cluster-{n:05d}" for n in range(consumers)]
    async with contextlib.AsyncExitStack() as stack:
        agents = []
        for name in names:
            agent = SimulatedAgent(consumer=name, config=agent_config, source=SOURCE)
            agents.append(await stack.enter_async_context(agent))
        postmaster = postmaster_of(db_url)
        await until_idle(hub_pid, postmaster, agents, per_agent, timeout=600)
        await asyncio.sleep(settle)  # NB: autovacuum visits the tables the agents' statuses just rewrote
        hub0, pg0, tx0, t0 = cpu_seconds(hub_pid), cluster_cpu(postmaster), xids(db_url), time.monotonic()
        await asyncio.sleep(window)
        hub1, pg1, tx1, t1 = cpu_seconds(hub_pid), cluster_cpu(postmaster), xids(db_url), time.monotonic()
    seconds = t1 - t0
    return {
        "seconds": seconds,
        "hub_pct": 100 * (hub1 - hub0) / seconds,
        "pg_pct": 100 * (pg1 - pg0) / seconds,
        "writes_per_min": 60 * (tx1 - tx0) / seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=int, default=6_000)
    parser.add_argument("--consumers", type=int, default=10)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of rest measured")
    parser.add_argument("--settle", type=float, default=90.0, help="seconds waited after the storm, before")
    parser.add_argument("--code", type=Path, help="run the hub from this checkout instead of this one")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        admin = stack.enter_context(throwaway_postgres())
        config_file = stack.enter_context(throwaway_mosquitto())
        db_url = fresh_database(admin)
        load(db_url, bundles=args.bundles, consumers=args.consumers)
        hub_args = ["--db-url", db_url, "--mqtt-config-file", str(config_file), "--client-id", "bench-hub"]
        python = ["env", "-C", str(args.code or ROOT), sys.executable]
        proc, _ = stack.enter_context(hub_process(hub_args, python=python))
        r = asyncio.run(
            measure(
                db_url,
                mqtt_config.load(config_file),
                proc.pid,
                consumers=args.consumers,
                per_agent=args.bundles // args.consumers,
                window=args.window,
                settle=args.settle,
            )
        )
    print(f"{args.bundles} bundles, {args.consumers} agents connected, {r['seconds']:.0f} s at rest")
    hub, pg, writes = r["hub_pct"], r["pg_pct"], r["writes_per_min"]
    print(f"hub CPU {hub:.2f} % of a core; PostgreSQL CPU {pg:.2f} %; {writes:.1f} writing transactions/min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
