"""Benchmark: our hub side by side with a Kubernetes hub apiserver (works as custom resources), in one run.

Starts a throwaway PostgreSQL and the real hub (``maestro server --disable-auth``, the helpers of
``rest_creates.py``), and the real control plane of ``tests/e2e/cluster.py`` (etcd, kube-apiserver, ...) with an
OCM-ManifestWork-shaped CRD. The same client (``--client``: httpx or aiohttp, HTTP/1.1 keep-alive, one connection
per worker) then creates the README's nginx Deployment as a work N times at each concurrency, as our resource-bundle
(``POST /api/maestro/v1/resource-bundles``, consumer cluster1) and as a ManifestWork in namespace cluster1 (``POST``
to kube-apiserver with the kubeconfig's client certificate), in interleaved rounds so that the machine's noise
hits both. A round ends once the machine is quiet again: the work its creates left behind (our publishes to the
agents, the controller manager's watch of the new works) counts as that side's and does not slow the next round
(creates/s are still the client's: creates answered per second of requests). Then it lists everything on both
sides, in one request and in pages of 500 (our cursor when the hub has one, else page/size; the apiserver's
limit/continue), and prints the rates, latencies and ratios.

    .venv/bin/python bench/vs_apiserver.py --works 200                # a quick run
    .venv/bin/python bench/vs_apiserver.py                            # 2,000 per concurrency, 1, 8 and 32
    .venv/bin/python bench/vs_apiserver.py --hub-arg=--db-max-open-connections=20   # any `maestro server` flag
    .venv/bin/python bench/vs_apiserver.py --client httpx,aiohttp     # the creates with each client in turn
    .venv/bin/python bench/vs_apiserver.py --mosquitto                # the hub on mosquitto, as the chart deploys it

On two cores the client shares the machine with both servers, so its CPU per create bounds the ratio a saturated
run can show: httpx spends about as much per create as our whole server side, aiohttp about a fifth of that (the
lists always use httpx: their client work is untimed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import dataclasses
import json
import os
import signal
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx

try:
    import aiohttp

    CLIENT_ERRORS: type[Exception] = aiohttp.ClientError
except ImportError:  # NB: --client httpx needs only the project's own dependencies.
    aiohttp = None  # type: ignore[assignment]
    CLIENT_ERRORS = httpx.HTTPError
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dispatch_e2e import mosquitto_broker  # noqa: E402
from bench.rest_creates import (  # noqa: E402
    NGINX,
    cpu_seconds,
    fresh_database,
    hub_process,
    percentile,
    server_cpu_seconds,
    throwaway_postgres,
)
from tests.e2e.cluster import ControlPlane, build_binaries  # noqa: E402

CONSUMER = "cluster1"  # our consumer, and the apiserver namespace of the ManifestWorks
GROUP = "work.open-cluster-management.io"
WORKS_PATH = f"/apis/{GROUP}/v1/namespaces/{CONSUMER}/manifestworks"
BUNDLES_PATH = "/api/maestro/v1/resource-bundles"
PAGE = 500

# The shape of OCM's ManifestWork, as far as the apiserver's work is concerned: a namespaced kind whose
# spec.workload.manifests is a list of arbitrary objects (kept as sent), with a status subresource.
MANIFESTWORK_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"manifestworks.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {"kind": "ManifestWork", "listKind": "ManifestWorkList", "plural": "manifestworks",
                  "singular": "manifestwork", "shortNames": ["mw"]},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "deleteOption": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "manifestConfigs": {
                                        "type": "array",
                                        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    },
                                    "workload": {
                                        "type": "object",
                                        "properties": {
                                            "manifests": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "x-kubernetes-preserve-unknown-fields": True,
                                                    "x-kubernetes-embedded-resource": True,
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}  # fmt: skip


def manifest(name: str) -> dict[str, Any]:
    """The README's nginx Deployment, named ``name`` (every work is its own Deployment)."""
    out = copy.deepcopy(NGINX)
    out["metadata"]["name"] = name
    return out


# -- the two sides ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Side:
    """One product as the client sees it, and the processes whose CPU is the server's share."""

    name: str
    base: str
    create_path: str
    body: Callable[[str], dict[str, Any]]
    processes: Callable[[], dict[str, float]]
    """CPU seconds so far of each of the server's processes."""
    verify: ssl.SSLContext | bool = True
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def client(self, *, connections: int = 1) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.base, limits=limits, timeout=120, verify=self.verify, headers=self.headers
        )

    def server_cpu(self) -> float:
        return sum(self.processes().values())


def bundle_body(name: str) -> dict[str, Any]:
    return {"consumer_name": CONSUMER, "name": name, "manifests": [manifest(name)]}


def manifestwork_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ManifestWork",
        "metadata": {"name": name, "namespace": CONSUMER},
        "spec": {"workload": {"manifests": [manifest(name)]}},
    }


def family_cpu(root: int) -> float:
    """CPU seconds of ``root``, its live children and its reaped ones (PostgreSQL: the postmaster, the backends,
    the autovacuum workers that came and went)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            if pid == root:
                ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            elif int(fields[1]) == root:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postmaster_pid(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        # NB: while the connection is open: its backend process exits with it.
        return int(Path(f"/proc/{backend[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])


def kube_credentials(kubeconfig: Path) -> tuple[ssl.SSLContext, dict[str, str]]:
    """TLS context (the cluster's CA, the user's client certificate) and headers (its token) of the current
    context of ``kubeconfig``; inline ``*-data`` or file references."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def pem(data_key: str, file_key: str, entry: dict[str, Any]) -> str | None:
        if data_key in entry:
            return base64.b64decode(entry[data_key]).decode()
        return Path(entry[file_key]).read_text() if file_key in entry else None

    ctx = ssl.create_default_context(cadata=pem("certificate-authority-data", "certificate-authority", cluster))
    cert, key = pem("client-certificate-data", "client-certificate", user), pem("client-key-data", "client-key", user)
    if cert and key:
        with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain reads files
            (Path(tmp) / "cert.pem").write_text(cert)
            (Path(tmp) / "key.pem").write_text(key)
            ctx.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    return ctx, headers


def install_crd(side: Side) -> None:
    """The ManifestWork CRD and namespace cluster1, until a ManifestWork list answers."""
    with httpx.Client(base_url=side.base, verify=side.verify, headers=side.headers, timeout=30) as api:
        api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=MANIFESTWORK_CRD).raise_for_status()
        api.post("/api/v1/namespaces", json={"metadata": {"name": CONSUMER}}).raise_for_status()
        deadline = time.monotonic() + 60
        while api.get(WORKS_PATH).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the ManifestWork CRD was not served within 60 s")
            time.sleep(0.2)


# -- creates ------------------------------------------------------------------------------------------------


class Poster(contextlib.AbstractAsyncContextManager["Poster"]):
    """One keep-alive connection to a side, posting JSON: the create loop's client, whichever library."""

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        """(status, the first 200 characters of the body); raises OSError or the library's errors."""
        raise NotImplementedError

    async def warm(self, path: str) -> None:
        """Open the connection (and its TLS session) untimed."""
        raise NotImplementedError


class HttpxPoster(Poster):
    def __init__(self, side: Side) -> None:
        self.client = side.client()

    async def __aenter__(self) -> HttpxPoster:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        response = await self.client.post(path, json=body)
        return response.status_code, response.text[:200]

    async def warm(self, path: str) -> None:
        await self.client.get(path, params={"limit": 1, "size": 1})


class AiohttpPoster(Poster):
    """aiohttp (``pip install -e '.[bench]'``): its HTTP parser is C, a fifth of httpx's CPU per create."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AiohttpPoster:
        tls = self.side.verify if isinstance(self.side.verify, ssl.SSLContext) else None
        self.session = aiohttp.ClientSession(
            base_url=self.side.base,
            connector=aiohttp.TCPConnector(limit=1, ssl=tls if tls is not None else False),
            headers=self.side.headers,
            timeout=aiohttp.ClientTimeout(total=120),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.post(path, json=body) as response:
            return response.status, (await response.text())[:200]

    async def warm(self, path: str) -> None:
        assert self.session is not None
        async with self.session.get(path, params={"limit": 1, "size": 1}) as response:
            await response.read()


POSTERS: dict[str, Callable[[Side], Poster]] = {"httpx": HttpxPoster, "aiohttp": AiohttpPoster}


@dataclasses.dataclass
class Tally:
    """What one side did at one concurrency, summed over its rounds."""

    elapsed: float = 0.0
    created: int = 0
    errors: int = 0
    first_error: str = ""
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    by_process: dict[str, float] = dataclasses.field(default_factory=dict)
    latencies: list[float] = dataclasses.field(default_factory=list)


async def create_round(side: Side, clients: list[Poster], names: list[str], tally: Tally) -> None:
    """Create ``names`` from one worker per client, each on its own keep-alive connection."""
    queue = iter(names)

    async def worker(client: Poster) -> None:
        for name in queue:
            start = time.perf_counter()
            try:
                status, text = await client.post(side.create_path, side.body(name))
                ok, why = status == 201, f"{status} {text}"
            except (httpx.HTTPError, CLIENT_ERRORS, OSError) as exc:
                ok, why = False, repr(exc)
            tally.latencies.append(time.perf_counter() - start)
            if ok:
                tally.created += 1
            else:
                tally.errors += 1
                tally.first_error = tally.first_error or why

    start, client_cpu, processes = time.perf_counter(), time.process_time(), side.processes()
    await asyncio.gather(*(worker(c) for c in clients))
    tally.elapsed += time.perf_counter() - start
    tally.client_cpu += time.process_time() - client_cpu
    await settle()  # NB: what the creates left to do (publishes, watch events) is theirs, and not the next round's
    for name, cpu in side.processes().items():
        tally.by_process[name] = tally.by_process.get(name, 0.0) + cpu - processes[name]
    tally.server_cpu = sum(tally.by_process.values())


SETTLED: Final = 0.1
"""Cores the machine may keep busy and still count as settled between rounds."""


async def settle(timeout: float = 5.0, window: float = 0.2) -> None:
    """Wait until the machine is quiet (under :data:`SETTLED` cores busy over ``window`` seconds), at most
    ``timeout``: a side's round ends when the work its creates caused has been done, and starts on a quiet machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = machine_busy()
        await asyncio.sleep(window)
        if (machine_busy() - before) / window < SETTLED:
            return


async def create_level(
    sides: list[Side], *, client: str, concurrency: int, works: int, rounds: int, tag: str
) -> list[Tally]:
    """``works`` creates per side at ``concurrency``, in ``rounds`` rounds per side, alternating sides (ABBA...)."""
    tallies = [Tally() for _ in sides]
    names = [f"nginx-{tag}-{i}" for i in range(works)]
    chunks = [names[r * works // rounds : (r + 1) * works // rounds] for r in range(rounds)]
    async with contextlib.AsyncExitStack() as stack:
        clients = [[await stack.enter_async_context(POSTERS[client](s)) for _ in range(concurrency)] for s in sides]
        for side, own in zip(sides, clients, strict=True):  # open the connections (and TLS sessions) untimed
            await asyncio.gather(*(c.warm(side.create_path) for c in own))
        for r, chunk in enumerate(chunks):
            order = range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))
            for i in order:
                await create_round(sides[i], clients[i], chunk, tallies[i])
    return tallies


# -- lists --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Listing:
    """One way to read every work: its pages' query parameters come from the previous page."""

    label: str
    side: Side
    first: dict[str, str | int]
    following: Callable[[dict[str, Any], dict[str, str | int]], dict[str, str | int] | None]


async def list_all(client: httpx.AsyncClient, listing: Listing) -> tuple[float, int, int, int]:
    """Seconds spent in requests (send to last body byte; decoding pages is not timed), items, bytes of JSON and
    bytes on the wire (less when the server compressed: httpx asks for gzip, as client-go does)."""
    spent, items, size, wire = 0.0, 0, 0, 0
    params: dict[str, str | int] | None = listing.first
    while params is not None:
        start = time.perf_counter()
        response = await client.get(listing.side.create_path, params=params)
        body = response.content
        spent += time.perf_counter() - start
        response.raise_for_status()
        page = json.loads(body)
        items += len(page["items"])
        size += len(body)
        wire += response.num_bytes_downloaded
        params = listing.following(page, params)
    return spent, items, size, wire


def our_listings(side: Side, total: int, cursor: bool) -> list[Listing]:
    def by_cursor(page: dict[str, Any], params: dict[str, str | int]) -> dict[str, str | int] | None:
        return {"after": page["next"], "size": PAGE} if page.get("next") else None

    def by_page(page: dict[str, Any], params: dict[str, str | int]) -> dict[str, str | int] | None:
        number = int(params["page"])
        return {"page": number + 1, "size": PAGE} if number * PAGE < page["total"] else None

    paged = (
        Listing(f"?after= cursor, size {PAGE}", side, {"after": "", "size": PAGE}, by_cursor)
        if cursor
        else Listing(f"page/size {PAGE}", side, {"page": 1, "size": PAGE}, by_page)
    )
    return [Listing("?size=N", side, {"size": total}, lambda page, params: None), paged]


def apiserver_listings(side: Side) -> list[Listing]:
    def by_continue(page: dict[str, Any], params: dict[str, str | int]) -> dict[str, str | int] | None:
        token = page.get("metadata", {}).get("continue")
        return {"limit": PAGE, "continue": token} if token else None

    return [
        Listing("no limit", side, {}, lambda page, params: None),
        Listing(f"limit {PAGE} + continue", side, {"limit": PAGE}, by_continue),
    ]


async def has_cursor(side: Side) -> bool:
    """Whether the hub pages by cursor: ``?after=`` (empty: the walk's start) answers a ``next``."""
    async with side.client() as client:
        response = await client.get(side.create_path, params={"after": "", "size": 1})
    return response.status_code == 200 and "next" in response.json()


@dataclasses.dataclass(frozen=True)
class ListResult:
    label: str
    seconds: float
    """Median over the repeats."""
    server_cpu: float
    items: int
    size: int
    wire: int


async def measure_lists(pairs: list[tuple[Listing, Listing]], *, repeats: int) -> list[tuple[ListResult, ...]]:
    """Every listing ``repeats`` times, the two of a pair one after the other (alternating who goes first)."""
    out = []
    for pair in pairs:
        runs: list[list[tuple[float, float, int, int, int]]] = [[] for _ in pair]
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(lst.side.client()) for lst in pair]
            for lst, client in zip(pair, clients, strict=True):  # warm: connection, caches
                await list_all(client, lst)
            for r in range(repeats):
                for i in range(len(pair)) if r % 2 == 0 else reversed(range(len(pair))):
                    cpu = pair[i].side.server_cpu()
                    spent, items, size, wire = await list_all(clients[i], pair[i])
                    runs[i].append((spent, pair[i].side.server_cpu() - cpu, items, size, wire))
        out.append(
            tuple(
                ListResult(
                    label=lst.label,
                    seconds=statistics.median(r[0] for r in rs),
                    server_cpu=statistics.median(r[1] for r in rs),
                    items=rs[-1][2],
                    size=rs[-1][3],
                    wire=rs[-1][4],
                )
                for lst, rs in zip(pair, runs, strict=True)
            )
        )
    return out


# -- the run ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Results:
    levels: list[tuple[str, int, list[Tally]]]
    """(client, concurrency, the sides' tallies)."""
    lists: list[tuple[ListResult, ...]]
    expected: int
    cursor: bool
    busy: tuple[float, float]
    """Cores busy on average during the creates: the whole machine, and this run's processes."""


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (``/proc/stat``; idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


async def measure(ours: Side, kube: Side, own_cpu: Callable[[], float], args: argparse.Namespace) -> Results:
    sides = [ours, kube]
    async with ours.client() as hub:
        (await hub.post("/api/maestro/v1/consumers", json={"name": CONSUMER})).raise_for_status()
    print(f"warm-up: {args.warmup} creates per side at concurrency 8", file=sys.stderr)
    warm = await create_level(sides, client=args.client[0], concurrency=8, works=args.warmup, rounds=1, tag="warmup")
    levels = []
    start, machine, own = time.monotonic(), machine_busy(), own_cpu()
    for client in args.client:
        for concurrency in args.concurrency:
            print(f"{client}, concurrency {concurrency}: {args.works} creates per side", file=sys.stderr, flush=True)
            tallies = await create_level(
                sides, client=client, concurrency=concurrency, works=args.works, rounds=args.rounds,
                tag=f"{client}-c{concurrency}",
            )  # fmt: skip
            levels.append((client, concurrency, tallies))
    wall = time.monotonic() - start
    busy = ((machine_busy() - machine) / wall, (own_cpu() - own) / wall)
    created = [w.created + sum(t[i].created for _, _, t in levels) for i, w in enumerate(warm)]
    if created[0] != created[1]:
        print(f"warning: created {created[0]} bundles but {created[1]} ManifestWorks", file=sys.stderr)
    cursor = await has_cursor(ours)
    print(f"lists of {created[0]} ({'cursor' if cursor else 'no cursor: page/size'})", file=sys.stderr)
    pairs = list(zip(our_listings(ours, created[0], cursor), apiserver_listings(kube), strict=True))
    lists = await measure_lists(pairs, repeats=args.list_repeats)
    return Results(levels=levels, lists=lists, expected=created[0], cursor=cursor, busy=busy)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def environment(hub_args: list[str], *, mosquitto: bool) -> Iterator[tuple[Side, Side, Callable[[], float]]]:
    """PostgreSQL, the hub (with a mosquitto of its own when ``mosquitto``) and the control plane with the CRD, and
    the CPU seconds so far of all that and this process; everything stopped by PID on exit."""
    with contextlib.ExitStack() as stack:
        url = fresh_database(stack.enter_context(throwaway_postgres()))
        postmaster = postmaster_pid(url)
        broker_pid: int | None = None
        if mosquitto:
            config, broker = stack.enter_context(mosquitto_broker())
            hub_args = ["--mqtt-config-file", str(config), *hub_args]
            broker_pid = broker.pid
        hub, ports = stack.enter_context(hub_process(["--db-url", url, *hub_args]))

        def our_processes() -> dict[str, float]:
            # NB: the hub process and its REST workers (--http-workers); the broker when it is a process apart.
            out = {"hub": server_cpu_seconds(hub.pid)[1], "PostgreSQL": family_cpu(postmaster)}
            return out | ({"mosquitto": cpu_seconds(broker_pid)} if broker_pid is not None else {})

        ours = Side(
            name="ours",
            base=f"http://127.0.0.1:{ports.rest}",
            create_path=BUNDLES_PATH,
            body=bundle_body,
            processes=our_processes,
        )
        plane = ControlPlane(build_binaries().bin_dir)
        stack.callback(plane.stop)
        kubeconfig = plane.start()
        pids = {p.name: p.popen.pid for p in plane.procs}
        verify, headers = kube_credentials(kubeconfig)
        kube = Side(
            name="apiserver",
            base=plane.server,
            create_path=WORKS_PATH,
            body=manifestwork_body,
            processes=lambda: {name: cpu_seconds(pids[name]) for name in ("kube-apiserver", "etcd")},
            verify=verify,
            headers=headers,
        )
        install_crd(kube)

        def own_cpu() -> float:
            plane_cpu = sum(cpu_seconds(pid) for name, pid in pids.items() if name not in ("kube-apiserver", "etcd"))
            return time.process_time() + ours.server_cpu() + kube.server_cpu() + plane_cpu

        yield ours, kube, own_cpu


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def rate(t: Tally) -> float:
    return t.created / t.elapsed if t.elapsed else 0.0


def per_create(cpu: float, t: Tally) -> float:
    """CPU milliseconds per successful create."""
    return cpu / max(1, t.created) * 1000


def print_creates(levels: list[tuple[str, int, list[Tally]]], args: argparse.Namespace) -> None:
    print(
        f"\ncreates: {args.works} works per side per concurrency, {args.rounds} interleaved rounds each\n"
        "ours = resource-bundle on our hub (+ PostgreSQL), kube = ManifestWork on kube-apiserver (+ etcd); CPU in ms"
        " per create"
    )
    print(
        f"{'client':>7} {'conc':>4} {'ours/s':>7} {'kube/s':>7} {'ours/kube':>9}"
        f"  {'ours p50/p99 ms':>15}  {'kube p50/p99 ms':>15}"
        f"  {'errors o/k':>10}  {'server CPU o/k':>14}  {'client CPU o/k':>14}"
    )
    for client, concurrency, (o, k) in levels:
        lat = []
        for t in (o, k):
            t.latencies.sort()
            lat.append(f"{percentile(t.latencies, 0.5) * 1000:.1f} / {percentile(t.latencies, 0.99) * 1000:.1f}")
        server = f"{per_create(o.server_cpu, o):.2f} / {per_create(k.server_cpu, k):.2f}"
        client_cpu = f"{per_create(o.client_cpu, o):.2f} / {per_create(k.client_cpu, k):.2f}"
        print(
            f"{client:>7} {concurrency:>4} {rate(o):>7.0f} {rate(k):>7.0f} {ratio(rate(o), rate(k)):>9}"
            f"  {lat[0]:>15}  {lat[1]:>15}  {f'{o.errors} / {k.errors}':>10}  {server:>14}  {client_cpu:>14}"
        )
        for name, t in (("ours", o), ("kube", k)):
            if t.errors:
                print(f"     first error ({name}): {t.first_error}")
    print("server CPU per create by process:")
    for client, concurrency, tallies in levels:
        parts = (", ".join(f"{n} {per_create(cpu, t):.2f}" for n, cpu in t.by_process.items()) for t in tallies)
        print(f"{client:>7} {concurrency:>4}  {' | '.join(parts)}")


def print_lists(lists: list[tuple[ListResult, ...]], *, expected: int, repeats: int) -> None:
    print(f"\nlists of all {expected} works per side, median of {repeats}; time from request to last byte")
    print(
        f"{'ours | kube':<38} {'ours ms':>8} {'kube ms':>8} {'ours/kube':>9}  {'JSON MB o/k':>11}"
        f"  {'wire MB o/k':>11}  {'server CPU ms o/k':>17}"
    )
    for o, k in lists:
        print(
            f"{o.label + ' | ' + k.label:<38} {o.seconds * 1000:>8.0f} {k.seconds * 1000:>8.0f}"
            f" {ratio(o.seconds, k.seconds):>9}  {f'{o.size / 1e6:.1f} / {k.size / 1e6:.1f}':>11}"
            f"  {f'{o.wire / 1e6:.1f} / {k.wire / 1e6:.1f}':>11}"
            f"  {f'{o.server_cpu * 1000:.0f} / {k.server_cpu * 1000:.0f}':>17}"
        )
        for lst in (o, k):
            if lst.items != expected:
                print(f"     warning: {lst.label} read {lst.items} items, expected {expected}")


def print_targets(results: Results) -> None:
    print("\ntargets (issue 11): creates/s ours/kube >= 1.5 at concurrency 8 and 32, list time ours/kube <= 0.5")
    for client, concurrency, (o, k) in results.levels:
        if concurrency in (8, 32):
            r = rate(o) / rate(k) if rate(k) else 0.0
            print(f"  creates ({client}) at concurrency {concurrency}: {r:.2f} -> {'met' if r >= 1.5 else 'NOT met'}")
    for lo, lk in results.lists:
        r = lo.seconds / lk.seconds if lk.seconds else float("inf")
        print(f"  list, {lo.label} vs {lk.label}: {r:.2f} -> {'met' if r <= 0.5 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=2000, help="creates per side per concurrency (default 2000)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[1, 8, 32],
        help="comma-separated client concurrencies (default 1,8,32)",
    )
    parser.add_argument(
        "--client",
        type=lambda s: [c for c in s.split(",") if c],
        default=["httpx", "aiohttp"],
        help=f"comma-separated HTTP clients for the creates, each in turn ({', '.join(POSTERS)}; default both)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per side per concurrency (default 4)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed creates per side first (default 100)")
    parser.add_argument("--list-repeats", type=int, default=5, help="timed lists per way of listing (default 5)")
    parser.add_argument(
        "--hub-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more flag for maestro server, e.g. --hub-arg=--db-max-open-connections=20 (repeatable)",
    )
    parser.add_argument(
        "--mosquitto",
        action="store_true",
        help="the hub delivers through a mosquitto of its own (as deployed by the chart; its CPU is the server's)"
        " rather than its embedded broker",
    )
    args = parser.parse_args()
    if unknown := set(args.client) - set(POSTERS):
        parser.error(f"--client: unknown {', '.join(sorted(unknown))} (known: {', '.join(POSTERS)})")
    if "aiohttp" in args.client and aiohttp is None:
        parser.error("--client aiohttp: aiohttp is not installed (pip install -e '.[bench]')")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with environment(args.hub_arg, mosquitto=args.mosquitto) as (ours, kube, own_cpu):
            results = asyncio.run(measure(ours, kube, own_cpu, args))
    except KeyboardInterrupt:
        print("interrupted; all that was started is stopped", file=sys.stderr)
        return 130
    print_creates(results.levels, args)
    machine, own = results.busy
    print(f"during the creates: {machine:.2f} of {os.cpu_count()} cores busy on average, {own:.2f} of them this run's")
    print_lists(results.lists, expected=results.expected, repeats=args.list_repeats)
    print_targets(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
