"""Benchmark: a hub (re)starting over many bundles and consumers: time to ready and to idle, peak RSS, resyncs.

Starts a throwaway PostgreSQL (``fsync=off``; or uses ``--db-url``) and a mosquitto on a free port, loads
``--bundles`` resource bundles spread over ``--consumers`` consumers with COPY (each with a stored status, as a
hub that has been running a while has them; nothing pending in the outbox), then starts ``maestro server`` in a
subprocess ``--starts`` times (the second and later are restarts) and for each prints: seconds to ready
(``/healthcheck`` 200), seconds to idle (the hub's CPU under 2 % of a core for 3 s in a row) and the CPU seconds the
hub used until then (imports included: a busy machine stretches the wall time, not this), RSS at ready, peak
RSS (``VmHWM``), RSS at idle and the status resync requests it sent (its ``maestro_resync_events_sent`` metric).

    .venv/bin/python bench/startup.py                                    # 100,000 bundles, 10,000 consumers
    .venv/bin/python bench/startup.py --bundles 1000000 --consumers 10000
    .venv/bin/python bench/startup.py --code /tmp/maestro-before         # the same, with another checkout's hub
    .venv/bin/python bench/startup.py --profile /tmp/startup.prof        # cProfile the last start
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dispatch_e2e import rss_kib, throwaway_mosquitto  # noqa: E402
from bench.rest_creates import cpu_seconds, fresh_database, hub_process, throwaway_postgres  # noqa: E402

SOURCE = "maestro"
IDLE_CPU = 0.02
"""A hub using less than this share of a core for ``IDLE_SECONDS`` in a row is idle."""
IDLE_SECONDS = 3


def load(db_url: str, *, bundles: int, consumers: int) -> float:
    """COPY ``consumers`` consumers and ``bundles`` bundles (round robin over them) into ``db_url``; seconds."""
    started = time.monotonic()
    now = datetime.now(UTC)
    names = [f"cluster-{n:05d}" for n in range(consumers)]
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY consumers (id, name, created_at, updated_at) FROM STDIN") as copy:
            for name in names:
                copy.write_row((str(uuid.uuid4()), name, now, now))
        columns = "id, name, source, consumer_name, type, version, payload, status, created_at, updated_at"
        with cur.copy(f"COPY resources ({columns}) FROM STDIN") as copy:
            for n in range(bundles):
                rid, consumer = str(uuid.uuid4()), names[n % consumers]
                copy.write_row(
                    (rid, rid, SOURCE, consumer, "Bundle", 1, _payload(rid, consumer, n), _status(n), now, now)
                )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # NB: as autovacuum would have by now: visibility map and statistics
    return time.monotonic() - started


def _payload(rid: str, consumer: str, n: int) -> str:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"nginx-{n}", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginxinc/nginx-unprivileged"}]},
            },
        },
    }
    return json.dumps(
        {
            "metadata": {"name": rid, "uid": rid, "namespace": consumer, "labels": {"app": f"a{n % 100}"}},
            "data": {"manifests": [manifest], "deleteOption": {"propagationPolicy": "Foreground"}},
        }
    )


def _status(n: int) -> str:
    condition = {"type": "Applied", "status": "True", "reason": "AppliedManifestWorkComplete", "message": "ok"}
    return json.dumps(
        {
            "conditions": [{**condition, "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "resourceStatus": [],
            "ObservedVersion": 1,
            "SequenceID": str(10**18 + n),
            "StatusHash": f"{n:064x}",
        }
    )


def resyncs_sent(metrics_port: int) -> float:
    for line in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text.splitlines():
        if line.startswith('maestro_resync_events_sent_total{kind="status"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start(
    db_url: str, config_file: Path, *, code: Path | None, timeout: float, profile: str | None = None
) -> dict[str, float]:
    """One hub start, measured until idle."""
    args = ["--db-url", db_url, "--mqtt-config-file", str(config_file), "--client-id", "bench-hub"]
    began = time.monotonic()
    # NB: ``python -m server.cli`` imports from its working directory: ``env -C`` runs another checkout's hub.
    python = ["env", "-C", str(code or ROOT), sys.executable]
    if profile:
        python += ["-m", "cProfile", "-o", profile]
    with hub_process(args, python=python, ready_timeout=timeout) as (proc, ports):
        ready = time.monotonic() - began
        ready_rss = rss_kib(proc.pid)
        quiet, last_cpu, last_at = 0, cpu_seconds(proc.pid), time.monotonic()
        while quiet < IDLE_SECONDS:
            time.sleep(1.0)
            cpu, at = cpu_seconds(proc.pid), time.monotonic()
            quiet = quiet + 1 if (cpu - last_cpu) / (at - last_at) < IDLE_CPU else 0
            last_cpu, last_at = cpu, at
            if at - began > timeout:
                raise RuntimeError(f"the hub was not idle within {timeout:.0f} s")
        idle = last_at - IDLE_SECONDS - began
        return {
            "cpu_s": last_cpu,
            "ready_s": ready,
            "idle_s": idle,
            "ready_rss_mib": ready_rss / 1024,
            "peak_rss_mib": rss_kib(proc.pid, "VmHWM") / 1024,
            "idle_rss_mib": rss_kib(proc.pid) / 1024,
            "resync_events": resyncs_sent(ports.metrics),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=int, default=100_000)
    parser.add_argument("--consumers", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=2, help="hub starts, one after the other (restarts)")
    parser.add_argument("--db-url", help="an admin URL of an existing PostgreSQL (default: a throwaway one)")
    parser.add_argument("--code", type=Path, help="run the hub from this checkout instead of this one")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the last start of the hub into FILE")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        admin = args.db_url or stack.enter_context(throwaway_postgres())
        config_file = stack.enter_context(throwaway_mosquitto())
        db_url = fresh_database(admin)
        seconds = load(db_url, bundles=args.bundles, consumers=args.consumers)
        print(f"loaded {args.bundles} bundles over {args.consumers} consumers in {seconds:.1f} s", flush=True)
        header = "start  ready s  idle s  CPU s  RSS at ready MiB  peak RSS MiB  RSS idle MiB  peak/idle  resync events"
        print(header, flush=True)
        for n in range(1, args.starts + 1):
            profile = args.profile if n == args.starts else None
            r = start(db_url, config_file, code=args.code, timeout=args.timeout, profile=profile)
            print(
                f"{n:>5} {r['ready_s']:8.1f} {r['idle_s']:7.1f} {r['cpu_s']:6.1f} {r['ready_rss_mib']:17.0f}"
                f" {r['peak_rss_mib']:13.0f}"
                f" {r['idle_rss_mib']:13.0f} {r['peak_rss_mib'] / r['idle_rss_mib']:10.2f} {r['resync_events']:14.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
