"""Benchmark: the hub with N bundles and M consumers (issue 11): startup, lists, deep pages, searches, maintenance.

Starts a throwaway PostgreSQL (``fsync=off``, as the tests do), applies the migrations, loads M consumers and N
resources (1 % of them single resources, 0.1 % being deleted, the rest delivered with an agent's status) with a
spec event and a status event each, by COPY with the secondary indexes dropped and rebuilt after, then VACUUM
ANALYZE. Then it starts ``maestro server`` (no agents; embedded broker; gRPC off) and measures, each request
warmed once and then repeated: end-to-end ms (median) and the hub process's CPU ms per request (from /proc):

- restart to ready (``/healthcheck`` 200), to idle (a second under 2 % CPU), RSS idle and peak (VmHWM);
- ``GET /resource-bundles?size=6000``; a page of 100 at page 1 and at half the table, by ``page``/``size`` and
  by cursor (``after``, a token for the row at half the table); every documented search form, size 100;
- the maintenance queries, run by the store's own functions (prune in a transaction rolled back).

    .venv/bin/python bench/scale.py                              # 1,000,000 bundles, 10,000 consumers
    .venv/bin/python bench/scale.py --bundles 200000 --pgdata /tmp/scale-200k   # keep the loaded cluster
    .venv/bin/python bench/scale.py --pgdata /tmp/scale-200k --hub-src /tmp/old  # reuse it; another hub's code

``--pgdata DIR`` keeps the cluster in DIR and reuses it when it is already loaded (same N and M), so two hubs
(``--hub-src``: a source tree, e.g. ``git archive <commit> | tar -x -C DIR``) can be compared on the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import migrate  # noqa: E402
from server.store import db as store_db  # noqa: E402
from server.store import keyset, maintenance  # noqa: E402
from server.store import resources as resource_rows  # noqa: E402
from tests.fixtures.postgres import _as_postgres, _pg_bindir, free_port  # noqa: E402

BUNDLES = "/api/maestro/v1/resource-bundles"
SINGLES = "/api/maestro/v1/resources"
SPREAD_SECONDS = 4 * 86400
"""created_at spans 4 days: inside the 7-day retention, so the hub's own maintenance prunes nothing."""


# -- PostgreSQL ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres(pgdata: Path | None) -> Iterator[tuple[str, bool]]:
    """A cluster (kept in ``pgdata`` if given) on a free port; yields its URL and whether it was already there."""
    bindir = _pg_bindir()
    root = pgdata or Path(tempfile.mkdtemp(prefix="maestro-scale-pg-", dir="/tmp"))
    existed = (root / "data" / "PG_VERSION").exists()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    datadir, port = root / "data", free_port()
    if not existed:
        initdb = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        subprocess.run(_as_postgres([*initdb, "--no-sync"]), check=True, capture_output=True)
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200 -c shared_buffers=1GB -c maintenance_work_mem=512MB "
        "-c max_wal_size=8GB"
    )
    ctl = [str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(root / "server.log"), "-w", "-o", opts]
    subprocess.run(_as_postgres([*ctl, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", existed
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)
        if pgdata is None:
            shutil.rmtree(root, ignore_errors=True)


def _rid(i: int) -> str:
    return str(uuid.UUID(bytes=hashlib.md5(str(i).encode()).digest()))


def _copy_text(value: str) -> str:
    """A field in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _bundle_row(i: int, *, consumers: int, start: float) -> tuple[str, str, str]:
    """(resources row, events row, status_events row) in COPY text format."""
    rid = _rid(i)
    consumer = f"cluster-{i % consumers}"
    single = i % 100 == 0
    deleting = i % 1000 == 7
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i * SPREAD_SECONDS / ARGS.bundles)) + "+00"
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"nginx-{i}", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"image": "nginxinc/nginx-unprivileged", "name": "nginx"}]},
            },
        },
    }
    ident = {"group": "apps", "resource": "deployments", "name": f"nginx-{i}", "namespace": "default"}
    config: dict[str, Any] = {"resourceIdentifier": ident, "updateStrategy": {"type": "ServerSideApply"}}
    if single:
        config["feedbackRules"] = [{"type": "JSONPaths", "jsonPaths": [{"name": "status", "path": ".status"}]}]
    meta: dict[str, Any] = {"name": f"work-{i}", "uid": rid, "namespace": consumer}
    if not single:
        meta["labels"] = {"app": f"app-{i % 1000}", "env": ("prod", "dev", "test")[i % 3]}
    payload = {
        "metadata": meta,
        "data": {
            "manifests": [manifest],
            "deleteOption": {"propagationPolicy": "Foreground"},
            "manifestConfigs": [config],
        },
    }
    conditions = [
        {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": created[:19] + "Z"}
        for t in ("Applied", "Available")
    ]
    manifest_status: dict[str, Any] = {
        "conditions": conditions,
        "resourceMeta": {"ordinal": 0, **ident, "kind": "Deployment", "version": "v1"},
    }
    if single:
        raw = json.dumps({"replicas": 1, "availableReplicas": 1, "observedGeneration": 1})
        value = {"name": "status", "fieldValue": {"type": "JsonRaw", "jsonRaw": raw}}
        manifest_status["statusFeedback"] = {"values": [value]}
    status = {"ObservedVersion": 1, "SequenceID": str(i), "conditions": conditions, "resourceStatus": [manifest_status]}
    deleted = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 300)) + "+00") if deleting else "\\N"
    kind = "Single" if single else "Bundle"
    resource = "\t".join(
        [rid, f"work-{i}", f"src-{i % 100}", consumer, kind, "1", _copy_text(json.dumps(payload)),
         _copy_text(json.dumps(status)), created, created, deleted]
    )  # fmt: skip
    event = "\t".join([rid, consumer, "Create", "1", created, created])
    status_event = "\t".join(
        [rid, f"src-{i % 100}", kind, consumer, "StatusUpdate", "1", '{"ObservedVersion": 1}', created]
    )
    return resource, event, status_event


TABLES = ("resources", "events", "status_events")


def load(url: str, *, bundles: int, consumers: int) -> float:
    """COPY the rows in with the secondary indexes dropped, rebuild them, VACUUM ANALYZE; returns seconds."""
    began = time.monotonic()
    start = time.time() - SPREAD_SECONDS - 3600
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) AND indexname NOT IN"
            " (SELECT conname FROM pg_constraint)",
            [list(TABLES)],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")  # type: ignore[arg-type,unused-ignore]
        with conn.cursor().copy("COPY consumers (id, name) FROM STDIN") as copy:
            copy.write("".join(f"{_rid(-1 - c)}\tcluster-{c}\n" for c in range(consumers)))
        chunk = 20_000
        columns = {
            "resources": "id, name, source, consumer_name, type, version, payload, status, created_at, updated_at,"
            " deleted_at",
            "events": "source_id, consumer_name, event_type, version, created_at, reconciled_date",
            "status_events": "resource_id, resource_source, resource_type, consumer_name, status_event_type, version,"
            " status, created_at",
        }
        with contextlib.ExitStack() as stack:
            cursors = [conn.cursor() for _ in TABLES]
            for c in cursors:
                stack.enter_context(c)
            # NB: one COPY at a time per connection: load the three tables one after another, in chunks.
            for t, table in enumerate(TABLES):
                with cursors[t].copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:  # type: ignore[arg-type,unused-ignore]
                    for first in range(0, bundles, chunk):
                        rows = [
                            _bundle_row(i, consumers=consumers, start=start)[t]
                            for i in range(first, min(first + chunk, bundles))
                        ]
                        copy.write("\n".join(rows) + "\n")
                print(f"  loaded {table} in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        for _, definition in indexes:
            conn.execute(definition)  # type: ignore[arg-type,unused-ignore]
        print(f"  indexed in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CREATE TABLE scale_bench (bundles bigint, consumers bigint)")
        conn.execute("INSERT INTO scale_bench VALUES (%s, %s)", [bundles, consumers])
    return time.monotonic() - began


# -- the hub ---------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Hub:
    def __init__(self, url: str, src: Path) -> None:
        self.url, self.src = url, src
        self.rest, self.health = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, float]:
        """Start and wait for ready, then for idle; returns the startup numbers."""
        cmd = [
            sys.executable, "-m", "server.cli", "server", "--db-url", self.url, "--disable-auth",
            "--no-enable-grpc-server", "--embedded-mqtt-port", str(free_port()),
            "--http-server-bindport", str(self.rest), "--health-check-server-bindport", str(self.health),
            "--metrics-server-bindport", str(free_port()), "--log-level", "warning",
        ]  # fmt: skip
        began = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.src, env={**os.environ, "PYTHONPATH": str(self.src)})
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.health}/healthcheck", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        ready = time.monotonic() - began
        last, idle_for = cpu_seconds(self.proc.pid), 0
        while idle_for < 1 and time.monotonic() - began < 300:
            time.sleep(1)
            now = cpu_seconds(self.proc.pid)
            idle_for = idle_for + 1 if now - last < 0.02 else 0
            last = now
        idle = time.monotonic() - began - 1
        return {
            "ready_s": ready,
            "idle_s": idle,
            "rss_idle_mib": memory_mib(self.proc.pid, "VmRSS"),
            "rss_peak_mib": memory_mib(self.proc.pid, "VmHWM"),
        }

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


def measure(
    hub: Hub, client: httpx.Client, params: dict[str, Any], *, repeat: int, path: str = BUNDLES
) -> tuple[float, float, Any]:
    """(median end-to-end ms, hub CPU ms per request, last body) of ``GET path?params``; end to end is from the
    request to the response's last byte (the client's JSON decoding is not timed)."""
    response = client.get(path, params=params)  # warm: plans, caches
    response.raise_for_status()
    times = []
    cpu = hub.cpu()
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(path, params=params)
        times.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return statistics.median(times), (hub.cpu() - cpu) * 1000 / repeat, response.json()


async def maintenance_ms(url: str) -> list[tuple[str, float]]:
    conn = await asyncpg.connect(url)
    await store_db.init_connection(conn)
    out: list[tuple[str, float]] = []

    async def timed(name: str, call: Callable[[], Any]) -> None:
        await call()  # warm
        began = time.perf_counter()
        await call()
        out.append((name, (time.perf_counter() - began) * 1000))

    try:
        await timed("maintenance: undelivered", lambda: maintenance.undelivered(conn, older_than=600))
        await timed("maintenance: unconfirmed deletes", lambda: maintenance.unconfirmed_deletes(conn, quiet_for=60))
        await timed("maintenance: stale deletes", lambda: maintenance.stale_deletes(conn, older_than=3600))

        async def prune() -> None:
            tx = conn.transaction()
            await tx.start()
            try:
                await maintenance.prune(conn, older_than=7 * 86400)
            finally:
                await tx.rollback()

        await timed("maintenance: prune (rolled back)", prune)
    finally:
        await conn.close()
    return out


async def deep_token(url: str, depth: int, total: int) -> str:
    """The ``next`` token the hub would give after ``depth`` bundles in the default order."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT created_at, id FROM resources WHERE type = 'Bundle' ORDER BY created_at, id OFFSET $1 LIMIT 1",
            depth - 1,
        )
    finally:
        await conn.close()
    assert row is not None
    keys = keyset.keyset("resource-bundles", resource_rows.SCHEMA, {"created_at": ("created_at", "id")}, "")
    return keyset.encode(keys, keyset.Position(key=(row["created_at"], row["id"]), page=depth // 100, total=total))


SEARCHES = [
    "payload->'metadata'->'labels'->>'app' = 'app-7'",
    "payload.metadata.labels.app = 'app-7'",
    """payload->'metadata'->'labels' @> '{"app": "app-7"}'""",
    "payload.metadata.labels.app in ('app-7', 'app-8')",
    "name = 'work-123457'",
    "name like 'work-12345%'",
    "id like 'c8ff%'",
    "consumer_name = 'cluster-7'",
    "source = 'src-42'",
]


def run(args: argparse.Namespace) -> None:
    with postgres(args.pgdata) as (admin, existed):
        url = admin.rsplit("/", 1)[0] + "/scale"
        loaded = None
        if existed:
            with psycopg.connect(url) as conn:
                loaded = conn.execute("SELECT bundles, consumers FROM scale_bench").fetchone()
            if loaded != (args.bundles, args.consumers):
                sys.exit(f"{args.pgdata} holds {loaded}, not ({args.bundles}, {args.consumers}); use another --pgdata")
            print(f"reusing {args.pgdata}: {args.bundles:,} resources, {args.consumers:,} consumers", file=sys.stderr)
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE scale")
            migrate.apply(url)
            print(f"loading {args.bundles:,} resources, {args.consumers:,} consumers ...", file=sys.stderr)
            seconds = load(url, bundles=args.bundles, consumers=args.consumers)
            print(f"loaded in {seconds:.0f} s", file=sys.stderr)
        hub = Hub(url, args.hub_src)
        rows: list[tuple[str, str, str, str]] = []
        try:
            start = hub.start()
            with httpx.Client(base_url=f"http://127.0.0.1:{hub.rest}", timeout=120) as client:
                total = client.get(BUNDLES, params={"size": 0}).json()["total"]
                e2e, cpu, body = measure(hub, client, {"size": 6000}, repeat=args.repeat)
                rows.append(("list 6,000 bundles", f"{e2e:.0f}", f"{cpu:.0f}", f"{len(body['items'])} items"))
                e2e, cpu, body = measure(hub, client, {"size": 6000, "after": ""}, repeat=args.repeat)
                note = f"{len(body['items'])} items" + ("" if "next" in body else "; no cursor: ignored")
                rows.append(("list 6,000 bundles (cursor, after=)", f"{e2e:.0f}", f"{cpu:.0f}", note))
                e2e, cpu, body = measure(hub, client, {"size": 6000}, repeat=args.repeat, path=SINGLES)
                note = f"{len(body['items'])} items, with ContentStatus"
                rows.append(("list 6,000 single resources", f"{e2e:.0f}", f"{cpu:.0f}", note))
                mid = total // 200
                for label, params in (
                    ("page 1 of 100 (page/size)", {"page": 1, "size": 100}),
                    (f"page {mid:,} of 100 (page/size)", {"page": mid, "size": 100}),
                    ("page 1 of 100 (cursor, after=)", {"after": "", "size": 100}),
                    (
                        f"page ~{mid:,} of 100 (cursor)",
                        {"after": asyncio.run(deep_token(url, mid * 100, total)), "size": 100},
                    ),
                ):
                    e2e, cpu, body = measure(hub, client, params, repeat=args.repeat * 2)
                    note = f"total {body['total']:,}" + (
                        "" if "next" in body or "after" not in params else "; no cursor: ignored"
                    )
                    rows.append((label, f"{e2e:.1f}", f"{cpu:.1f}", note))
                for text in SEARCHES:
                    e2e, cpu, body = measure(hub, client, {"search": text, "size": 100}, repeat=args.repeat * 2)
                    rows.append((f"search {text}", f"{e2e:.1f}", f"{cpu:.1f}", f"total {body['total']:,}"))
            for name, ms in asyncio.run(maintenance_ms(url)):
                rows.append((name, f"{ms:.1f}", "-", "PostgreSQL, from the bench process"))
            peak = memory_mib(hub.proc.pid, "VmHWM") if hub.proc else 0.0
        finally:
            hub.stop()
    print(f"\n{args.bundles:,} resources ({total:,} bundles), {args.consumers:,} consumers; hub from {args.hub_src}")
    print(
        f"hub start: ready {start['ready_s']:.2f} s, idle {start['idle_s']:.0f} s; RSS idle {start['rss_idle_mib']:.0f}"
        f" MiB, peak at startup {start['rss_peak_mib']:.0f} MiB, peak after the requests {peak:.0f} MiB\n"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'e2e ms':>8}  {'hub CPU ms':>10}  note")
    for what, e2e_ms, cpu_ms, note in rows:
        print(f"{what:<{width}}  {e2e_ms:>8}  {cpu_ms:>10}  {note}")


ARGS: argparse.Namespace


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=int, default=1_000_000)
    parser.add_argument("--consumers", type=int, default=10_000)
    parser.add_argument("--pgdata", type=Path, help="keep (or reuse) the loaded cluster in this directory")
    parser.add_argument("--hub-src", type=Path, default=ROOT, help="the source tree the hub runs from")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per request (pages and searches: 2x)")
    ARGS = parser.parse_args()
    run(ARGS)


if __name__ == "__main__":
    main()
