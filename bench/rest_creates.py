"""Benchmark: REST creates per second against the real server stack.

Starts (or uses) a PostgreSQL, applies the migrations to a fresh database, runs ``maestro server`` in a
subprocess on free 127.0.0.1 ports, creates the consumer ``cluster1``, then at each client concurrency posts N
single resources (the README's nginx Deployment, a different name each) over HTTP/1.1 keep-alive, and prints
creates/s, p50/p99 latency and errors per concurrency.

    .venv/bin/python bench/rest_creates.py                    # throwaway PostgreSQL (as the tests start it)
    .venv/bin/python bench/rest_creates.py --db-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/rest_creates.py --http-workers 1,2 --rounds 3 --concurrency 8,32   # interleaved
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import migrate  # noqa: E402
from tests.fixtures.postgres import _as_postgres, _pg_bindir, free_port  # noqa: E402

NGINX: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"image": "nginxinc/nginx-unprivileged", "name": "nginx"}]},
        },
    },
}


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster on a free port, configured as the test fixture does (fsync off)."""
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="maestro-bench-pg-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    datadir, port = root / "data", free_port()
    initdb = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True)
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=300"
    )
    ctl = [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(root / "server.log"), "-w", "-o", opts]
    subprocess.run(_as_postgres([*ctl, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """Create and migrate a new database next to ``admin_url``'s; return its URL."""
    name = f"maestro_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type,unused-ignore]
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    migrate.apply(url)
    return url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to see who is busy: client, server or database."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the hub's REST workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def server_cpu_seconds(pid: int) -> tuple[float, float]:
    """(the hub process, the hub process and its live children): CPU seconds."""
    own, total = cpu_seconds(pid), 0.0
    for child in children(pid):
        with contextlib.suppress(OSError):  # NB: a child may exit between the listing and the read
            total += cpu_seconds(child)
    return own, own + total


SERVER_PID = 0
POSTMASTER_PID = 0
"""The PostgreSQL server the hub writes to (its CPU is counted apart: its backends are not the hub's children)."""


def postgres_cpu_seconds() -> float:
    from bench.vs_apiserver import family_cpu  # NB: here: that module imports this one

    return family_cpu(POSTMASTER_PID) if POSTMASTER_PID else 0.0


@dataclasses.dataclass(frozen=True)
class HubPorts:
    rest: int
    health: int
    metrics: int


@contextlib.contextmanager
def hub_process(
    args: list[str],
    *,
    python: list[str] | None = None,
    ready_timeout: float = 60.0,
    log: Path | None = None,
    src: Path = ROOT,
) -> Iterator[tuple[subprocess.Popen[bytes], HubPorts]]:
    """``maestro server <args>`` on free 127.0.0.1 ports (gRPC off, embedded broker on a free port unless ``args``
    configure one), until its ``/healthcheck`` is ready; SIGTERM on exit (a graceful stop, so cProfile writes).
    Its output goes to ``log`` when given (later ``args`` win, e.g. ``--log-level info``); ``src`` is the source
    tree it runs from (another build's, to compare)."""
    ports = HubPorts(rest=free_port(), health=free_port(), metrics=free_port())
    cmd = [
        *(python or [sys.executable]), "-m", "server.cli", "server",
        "--disable-auth",
        "--no-enable-grpc-server",
        "--embedded-mqtt-port", str(free_port()),
        "--http-server-bindport", str(ports.rest),
        "--health-check-server-bindport", str(ports.health),
        "--metrics-server-bindport", str(ports.metrics),
        "--log-level", "warning",
        *args,
    ]  # fmt: skip
    out = log.open("ab") if log is not None else None
    proc = subprocess.Popen(cmd, cwd=src, stdout=out, stderr=subprocess.STDOUT if out else None)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{ports.health}/healthcheck", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub was not ready in {ready_timeout:.0f} s")
            time.sleep(0.1)
        yield proc, ports
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if out is not None:
            out.close()


@contextlib.contextmanager
def server(
    db_url: str, *, max_db_connections: int, http_workers: int = 1, mqtt_config: Path | None = None
) -> Iterator[str]:
    args = ["--db-url", db_url, "--db-max-open-connections", str(max_db_connections)]
    args += ["--http-workers", str(http_workers)]
    args += ["--mqtt-config-file", str(mqtt_config)] if mqtt_config else []
    with hub_process(args) as (proc, ports):
        global SERVER_PID
        SERVER_PID = proc.pid
        yield f"http://127.0.0.1:{ports.rest}"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_level(
    base: str, *, concurrency: int, count: int, tag: str, rate: float | None = None
) -> dict[str, float]:
    """``count`` creates from ``concurrency`` workers, each on its own keep-alive connection; with ``rate``, create
    number i is not sent before i / ``rate`` seconds from the start (an open-loop pace that the hub's speed does not
    change, so runs on a busy machine batch the same way and their CPU per create compare).

    NB: one httpx client per worker (a pool of one connection each) rather than one client with a pool of
    ``concurrency``: httpx's pool scans its connections on every request, and with 64 of them the client alone
    burnt ~5 ms of CPU per request on this 2-core machine, starving the server it was measuring.
    """
    latencies: list[float] = []
    errors = 0
    next_index = 0
    start = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index, errors
        while next_index < count:
            i = next_index
            next_index += 1
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            manifest = copy.deepcopy(NGINX)
            manifest["metadata"]["name"] = f"nginx-{tag}-{i}"
            body = {"consumer_name": "cluster1", "name": f"nginx-{tag}-{i}", "manifest": manifest}
            sent = time.perf_counter()
            try:
                response = await client.post("/api/maestro/v1/resources", json=body)
                ok = response.status_code == 201
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - sent)
            if not ok:
                errors += 1

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=base, limits=limits, timeout=60))
            for _ in range(concurrency)
        ]
        # Open the connections before timing.
        await asyncio.gather(*(c.get("/api/maestro") for c in clients))
        start, client_cpu, (hub_cpu, server_cpu), pg_cpu = (
            time.perf_counter(),
            time.process_time(),
            server_cpu_seconds(SERVER_PID),
            postgres_cpu_seconds(),
        )
        await asyncio.gather(*(worker(c) for c in clients))
        elapsed = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu
        hub_after, server_after = server_cpu_seconds(SERVER_PID)
        hub_cpu, server_cpu = hub_after - hub_cpu, server_after - server_cpu
        pg_cpu = postgres_cpu_seconds() - pg_cpu
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": count,
        "creates_per_s": (count - errors) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
        "client_cpu_ms": client_cpu / count * 1000,
        "server_cpu_ms": server_cpu / count * 1000,
        "hub_cpu_ms": hub_cpu / count * 1000,
        "pg_cpu_ms": pg_cpu / count * 1000,
    }


async def bench(base: str, *, levels: list[int], count: int, rate: float | None = None) -> list[dict[str, float]]:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post("/api/maestro/v1/consumers", json={"name": "cluster1"})
        response.raise_for_status()
    await run_level(base, concurrency=8, count=200, tag="warmup")
    return [await run_level(base, concurrency=c, count=count, tag=f"c{c}", rate=rate) for c in levels]


HEADER = (
    f"{'workers':>7} {'concurrency':>11} {'requests':>8} {'creates/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    f" {'server CPU ms/req':>17} {'hub-proc CPU ms/req':>19} {'PostgreSQL CPU ms/req':>21} {'client CPU ms/req':>17}"
)


def _row(r: dict[str, float]) -> str:
    return (
        f"{r['workers']:>7} {r['concurrency']:>11} {r['requests']:>8} {r['creates_per_s']:>10.0f} {r['p50_ms']:>8.1f}"
        f" {r['p99_ms']:>8.1f} {r['errors']:>6} {r['server_cpu_ms']:>17.2f} {r['hub_cpu_ms']:>19.2f}"
        f" {r['pg_cpu_ms']:>21.2f} {r['client_cpu_ms']:>17.2f}"
    )


def main() -> int:
    global POSTMASTER_PID
    from bench.vs_apiserver import postmaster_pid  # NB: here: that module imports this one

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="a PostgreSQL URL whose server may get a new database (default: throwaway)")
    parser.add_argument("--requests", type=int, default=2000, help="creates per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated client concurrency levels")
    parser.add_argument("--db-max-open-connections", type=int, default=50, help="the server's pool size")
    parser.add_argument(
        "--http-workers", default="1", help="comma-separated --http-workers values; each round runs them in turn"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the --http-workers values (interleaved)")
    parser.add_argument(
        "--mosquitto",
        action="store_true",
        help="deliver through a throwaway mosquitto rather than the hub's embedded broker (in the hub process)",
    )
    parser.add_argument(
        "--rate", type=float, help="pace the creates at this many per second (open loop) instead of as fast as possible"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    worker_counts = [int(w) for w in args.http_workers.split(",")]

    rows: list[dict[str, float]] = []
    print(HEADER, flush=True)
    with contextlib.ExitStack() as stack:
        admin = args.db_url or stack.enter_context(throwaway_postgres())
        mqtt = None
        if args.mosquitto:
            from bench.dispatch_e2e import throwaway_mosquitto  # NB: here: that module imports this one

            mqtt = stack.enter_context(throwaway_mosquitto())
        for _ in range(args.rounds):
            for workers in worker_counts:
                url = fresh_database(admin)
                POSTMASTER_PID = postmaster_pid(url)
                pool = args.db_max_open_connections
                with server(url, max_db_connections=pool, http_workers=workers, mqtt_config=mqtt) as base:
                    run = asyncio.run(bench(base, levels=levels, count=args.requests, rate=args.rate))
                for r in run:
                    r["workers"] = workers
                    print(_row(r), flush=True)
                rows += run

    if args.rounds > 1:
        print(f"\nmedians of {args.rounds} interleaved rounds\n{HEADER}")
        for workers in worker_counts:
            for level in levels:
                same = [r for r in rows if r["workers"] == workers and r["concurrency"] == level]
                median = {k: statistics.median(r[k] for r in same) for k in same[0]}
                totals = {k: sum(r[k] for r in same) for k in ("requests", "errors")}
                print(_row(median | totals | {"workers": workers, "concurrency": level}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
