"""Benchmark: one real ``maestro agent`` applying N works on a real Kubernetes control plane.

Starts a control plane (``tests/e2e/cluster.py``; or uses ``--kubeconfig`` / ``MAESTRO_E2E_KUBECONFIG``), a
throwaway PostgreSQL and mosquitto and the real hub process (the helpers of ``rest_creates.py`` and
``dispatch_e2e.py``), the consumer, and the agent as a process. It watches status over the hub's REST watch
(``GET /resource-bundles?watch=true``), posts N single resources (ConfigMaps and/or 1-replica Deployments, which
kwok makes Available) from ``--concurrency`` REST writers, and prints works/s, write → Applied and write →
Available latencies, the agent's RSS and CPU, and its apiserver requests per work. It then restarts the agent and
prints the apiserver writes of that restart and whether any applied object changed, and the agent's idle CPU
with the N works held.

    .venv/bin/python bench/agent_apply.py --works 100
    .venv/bin/python bench/agent_apply.py --works 1000 --kind configmap
    .venv/bin/python bench/agent_apply.py --kubeconfig "$(cat /tmp/dev/kc)"     # an existing cluster
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dispatch_e2e import SOURCE, rss_kib, throwaway_mosquitto  # noqa: E402
from bench.rest_creates import cpu_seconds, fresh_database, hub_process, percentile, throwaway_postgres  # noqa: E402
from protocol import mqtt_config  # noqa: E402
from tests.e2e.agent_support import AW_GROUP, configmap, deployment, feedback, is_true  # noqa: E402
from tests.e2e.cluster import ControlPlane, build_binaries  # noqa: E402
from tests.e2e.hub_support import AgentProcess, agent_mqtt_yaml  # noqa: E402

KUBECONFIG_ENV = "MAESTRO_E2E_KUBECONFIG"
WORK_LABEL = f"{AW_GROUP}/appliedwork"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})
AGENT_RESOURCES = frozenset(
    {"appliedworks", "secrets", "configmaps", "deployments", "events", "customresourcedefinitions"}
)
FAKE_NODE_PODS = 110  # the pod capacity of tests/e2e/cluster.py's single kwok node
MIB = 1024
STALL = 30.0
"""Seconds without a new Applied or Available at the hub (three of the agent's 10 s status syncs) after which
the works still missing are reported as stuck, and the run goes on without them."""
QUIET = 6.0
"""Seconds without apiserver requests that mean the agent is done: more than kopf's idle worker timeout (5 s),
so a gap between two batches of kopf's workers does not look like the end."""


# -- the cluster side ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def __call__(self, *args: str, check: bool = True) -> str:
        cmd = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if check and res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)[:200]} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def items(self, *args: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self("get", *args, "-o", "json"))["items"]
        return items


def apiserver_requests(kubectl: Kubectl) -> collections.Counter[str]:
    """Requests the apiserver served so far (all clients) on the resources the agent uses, by
    ``"VERB resource[/subresource]"``.

    NB: the agent's own counter (``maestro_agent_kube_requests``) does not see kopf's requests (kopf has its own
    client: the AppliedWork finalizer and its annotations), hence this second count.
    """
    out: collections.Counter[str] = collections.Counter()
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        head, _, value = line.rpartition(" ")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if labels.get("resource") in AGENT_RESOURCES:
            sub = labels.get("subresource")
            out[f"{labels['verb']} {labels['resource']}" + (f"/{sub}" if sub else "")] += int(float(value))
    return out


def delta(before: collections.Counter[str], after: collections.Counter[str]) -> dict[str, int]:
    return {k: v - before[k] for k, v in after.items() if v != before[k]}


def writes_of(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k.split()[0] in WRITE_VERBS}


def listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def resource_versions(kubectl: Kubectl, namespace: str, agent_namespace: str, names: set[str]) -> dict[str, str]:
    """resourceVersion of every applied object, payload Secret and AppliedWork of this run."""
    versions = {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in kubectl.items("cm,deploy", "-n", namespace, "-l", WORK_LABEL)
    }
    for o in kubectl.items("secrets", "-n", agent_namespace):
        versions[f"Secret/{o['metadata']['name']}"] = o["metadata"]["resourceVersion"]
    for o in kubectl.items("appliedworks"):
        if o["metadata"]["name"] in names:
            versions[f"AppliedWork/{o['metadata']['name']}"] = o["metadata"]["resourceVersion"]
    return versions


def remove_works(kubectl: Kubectl, names: list[str]) -> None:
    """Delete this run's AppliedWorks from a cluster we do not own, with no agent left to finalize them."""
    for i in range(0, len(names), 200):
        chunk = names[i : i + 200]
        kubectl("delete", "appliedworks", *chunk, "--wait=false", "--ignore-not-found", check=False)
        kubectl("patch", "appliedworks", *chunk, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)


# -- the agent's side: /metrics, /proc ----------------------------------------------------------------------


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (``/proc/stat``; idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / tick, sum(fields) / tick


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            out[name] = cpu_seconds(pid)
    return out


@dataclasses.dataclass(frozen=True)
class AgentSample:
    at: float
    cpu: float
    rss_kib: int
    requests: float
    writes: float
    status_published: float


def agent_sample(agent: AgentProcess) -> AgentSample:
    values: dict[str, float] = collections.defaultdict(float)
    text = httpx.get(f"http://127.0.0.1:{agent.healthz_port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("maestro_agent_kube_requests{"):
            verb = line.split('verb="', 1)[1].split('"', 1)[0]
            values[verb] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("maestro_agent_status_published_total{"):
            values["status"] += float(line.rsplit(" ", 1)[1])
    return AgentSample(
        at=time.monotonic(),
        cpu=cpu_seconds(agent.pid),
        rss_kib=rss_kib(agent.pid),
        requests=values["all"],
        writes=values["write"],
        status_published=values["status"],
    )


async def until_quiet(agent: AgentProcess, *, timeout: float, quiet: float = QUIET) -> AgentSample:
    """Until the agent's apiserver request counter (refreshed every second) and its status messages have not
    moved for ``quiet`` seconds; the last sample (taken at the start of the quiet period)."""
    deadline = time.monotonic() + timeout
    last = first_quiet = await asyncio.to_thread(agent_sample, agent)
    while last.at - first_quiet.at < quiet:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent was still busy after {timeout:.0f} s\n{agent.tail()}")
        await asyncio.sleep(0.5)
        sample = await asyncio.to_thread(agent_sample, agent)
        if (sample.requests, sample.status_published) != (last.requests, last.status_published):
            first_quiet = sample
        last = sample
    return first_quiet


# -- the hub's side: REST writes and the status watch --------------------------------------------------------


class StatusWatch:
    """When each resource was first stored Applied and first Available, as the hub's REST watch streams it.

    The watch pushes each stored status (NOTIFY-driven), so the receipt time here is the storing time plus the
    stream's own latency, without polling load on the hub.
    """

    def __init__(self, api: str, consumer: str) -> None:
        self.api = api
        self.consumer = consumer
        self.applied: dict[str, float] = {}
        self.available: dict[str, float] = {}
        self.last: dict[str, dict[str, Any]] = {}
        """The latest status of the (first) manifest of each resource."""
        self.events = 0
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        params = {"watch": "true", "consumer_name": self.consumer}
        async with (
            httpx.AsyncClient(base_url=self.api, timeout=timeout) as client,
            client.stream("GET", "/resource-bundles", params=params) as response,
        ):
            response.raise_for_status()
            self.ready.set()
            async for line in response.aiter_lines():
                now = time.time()
                if line.strip():
                    self._take(json.loads(line), now)

    def _take(self, event: dict[str, Any], now: float) -> None:
        if event.get("type") != "StatusUpdate":
            return
        self.events += 1
        bundle = event["object"]
        rid = bundle["id"]
        manifest_statuses = (bundle.get("status") or {}).get("resourceStatus") or []
        first = manifest_statuses[0] if manifest_statuses else {}
        self.last[rid] = first
        conditions = first.get("conditions")
        if is_true(conditions, "Applied"):
            self.applied.setdefault(rid, now)
        if is_true(conditions, "Available") and rid not in self.available:
            kind = ((bundle.get("manifests") or [{}])[0]).get("kind")
            if kind != "Deployment" or available_replicas(first) >= 1:
                self.available[rid] = now
        self.changed.set()


def available_replicas(manifest_status: dict[str, Any]) -> int:
    """``ContentStatus.availableReplicas`` as REST shows it: the status feedback named ``status``."""
    with contextlib.suppress(KeyError, ValueError, TypeError):
        return int((feedback(manifest_status, "status") or {}).get("availableReplicas") or 0)
    return 0


@dataclasses.dataclass(frozen=True)
class Job:
    kind: str
    name: str
    manifest: dict[str, Any]


def jobs_for(kind: str, works: int, namespace: str) -> list[Job]:
    kinds = {"configmap": ["ConfigMap"], "deployment": ["Deployment"], "both": ["ConfigMap", "Deployment"]}[kind]
    jobs = []
    for i in range(works):
        k = kinds[i % len(kinds)]
        name = f"{'cm' if k == 'ConfigMap' else 'deploy'}-{i}"
        manifest = configmap(name, namespace, {"index": str(i)}) if k == "ConfigMap" else deployment(name, namespace)
        jobs.append(Job(kind=k, name=name, manifest=manifest))
    return jobs


async def post_works(
    api: str, consumer: str, jobs: list[Job], *, concurrency: int, written: dict[str, tuple[str, float]]
) -> None:
    """POST each job as one single resource; fills ``written`` with ``{resource id: (kind, time the POST
    started)}`` as the answers come (so a failed run still knows what to clean up).

    NB: one keep-alive client per writer, as ``rest_creates.py`` does (httpx's pool scans its connections).
    """
    queue = list(reversed(jobs))

    async def writer(client: httpx.AsyncClient) -> None:
        while queue:
            job = queue.pop()
            started = time.time()
            response = await client.post("/resources", json={"consumer_name": consumer, "manifest": job.manifest})
            if response.status_code != 201:
                raise RuntimeError(f"POST /resources {job.name}: {response.status_code} {response.text[:500]}")
            written[response.json()["id"]] = (job.kind, started)

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=api, limits=limits, timeout=60))
            for _ in range(concurrency)
        ]
        await asyncio.gather(*(writer(c) for c in clients))


# -- the run ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    api: str
    pids: dict[str, int]
    """Processes whose CPU is shown next to the agent's: the hub and (our own cluster's) control plane."""
    consumer: str
    namespace: str
    agent_namespace: str
    agent: AgentProcess
    kubectl: Kubectl


@dataclasses.dataclass
class Results:
    rows: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, what: str, value: str, target: str = "") -> None:
        self.rows.append((what, value, target))


def ms_quantiles(values: list[float]) -> str:
    values = sorted(values)
    return f"{percentile(values, 0.5) * 1000:.0f} / {percentile(values, 0.99) * 1000:.0f}"


class Run:
    """The three phases, one after the other, on one agent: apply N works, restart the agent, idle."""

    def __init__(self, setup: Setup, watch: StatusWatch, written: dict[str, tuple[str, float]]) -> None:
        self.setup = setup
        self.agent = setup.agent
        self.kubectl = setup.kubectl
        self.watch = watch
        self.written = written
        """Resource id → (kind, time its POST started); filled while posting (the caller cleans up by it)."""
        self.out = Results()
        self.stuck: list[str] = []
        """Works that never became Available at the hub while applying."""

    async def requests(self) -> collections.Counter[str]:
        return await asyncio.to_thread(apiserver_requests, self.kubectl)

    async def apply(self, jobs: list[Job], *, concurrency: int) -> None:
        agent, watch, out, n = self.agent, self.watch, self.out, len(jobs)
        start = await until_quiet(agent, timeout=120)
        api_before, others, machine = await self.requests(), cpu_of(self.setup.pids), machine_cpu()

        first_write = time.time()
        await post_works(self.setup.api, self.setup.consumer, jobs, concurrency=concurrency, written=self.written)
        writes_done = time.time()
        self.stuck = await self.until_all_available(timeout=max(120.0, n * 0.5))
        done = await asyncio.to_thread(agent_sample, agent)
        busy, total = (b - a for a, b in zip(machine, machine_cpu(), strict=True))
        others = {k: v - others[k] for k, v in cpu_of(self.setup.pids).items() if k in others}
        quiet = await until_quiet(agent, timeout=max(120.0, n * 0.5))
        api = delta(api_before, await self.requests())
        peak = rss_kib(agent.pid, "VmHWM")

        written = self.written
        kinds = sorted({kind for kind, _ in written.values()})
        out.add("REST writes", f"{n / (writes_done - first_write):.0f} works/s ({concurrency} writers)")
        for kind in [*kinds, "all"] if len(kinds) > 1 else kinds:
            ids = [rid for rid, (k, _) in written.items() if kind in ("all", k)]
            applied = [watch.applied[r] - written[r][1] for r in ids if r in watch.applied]
            available = [watch.available[r] - written[r][1] for r in ids if r in watch.available]
            out.add(f"write → Applied p50 / p99 ms ({kind})", ms_quantiles(applied))
            out.add(f"write → Available p50 / p99 ms ({kind})", ms_quantiles(available))
        if len(watch.applied) == n:
            out.add("all Applied after", f"{max(watch.applied.values()) - first_write:.1f} s")
        if self.stuck:
            out.add("works never Available (stuck)", f"{len(self.stuck)} of {n}", "0")
            out.notes.extend(await asyncio.to_thread(self.stuck_detail))
        else:
            all_available = max(watch.available.values()) - first_write
            out.add("all Applied and Available after", f"{all_available:.1f} s", "100 works < 10 s")
            out.add("works/s (N / time to all Available)", f"{n / all_available:.1f}")
        out.add(
            "agent RSS before / after / peak",
            f"{start.rss_kib / MIB:.0f} / {quiet.rss_kib / MIB:.0f} / {peak / MIB:.0f} MiB",
            "< 150 MiB at 1,000 works",
        )
        out.add("agent RSS per work", f"{(quiet.rss_kib - start.rss_kib) / n:.0f} KiB")
        apply_cpu = done.cpu - start.cpu
        out.add("agent CPU until all Available", f"{apply_cpu:.1f} s = {apply_cpu / n * 1000:.1f} ms per work")
        settle_cpu = quiet.cpu - start.cpu
        out.add("agent CPU until quiet", f"{settle_cpu:.1f} s = {settle_cpu / n * 1000:.1f} ms per work")
        window, cores = done.at - start.at, os.cpu_count() or 1
        out.add(
            "machine CPU until all Available",
            f"{busy / total * cores:.2f} of {cores} cores busy; "
            + ", ".join(f"{k} {v / window:.2f}" for k, v in [("agent", apply_cpu), *sorted(others.items())]),
        )
        if "hub" in others:
            out.add("hub CPU per work", f"{others['hub'] / n * 1000:.1f} ms")
        requests, writes = quiet.requests - start.requests, quiet.writes - start.writes
        out.add("apiserver requests per work (agent)", f"{requests / n:.2f} ({requests:.0f})")
        out.add("apiserver writes per work (agent)", f"{writes / n:.2f} ({writes:.0f})")
        aw_writes = sum(v for k, v in writes_of(api).items() if k.split()[1].startswith("appliedworks"))
        out.add("AppliedWork writes per work (apiserver, kopf's incl.)", f"{aw_writes / n:.2f} ({aw_writes})")
        status = quiet.status_published - start.status_published
        out.add("status messages per work (agent → hub)", f"{status / n:.2f}; {watch.events / n:.2f} stored")
        out.notes.append(
            "apiserver writes while applying, all clients (the kube-controller-manager and the scheduler write "
            f"deployments/status and events too): {listing(writes_of(api))}"
        )

    async def until_all_available(self, *, timeout: float) -> list[str]:
        """Until every work is stored Applied and Available; the ones still missing when nothing moved for
        ``STALL`` seconds (or after ``timeout``)."""
        watch, deadline = self.watch, time.monotonic() + timeout
        progress, moved = -1, time.monotonic()
        while True:
            missing = [rid for rid in self.written if rid not in watch.applied or rid not in watch.available]
            now = time.monotonic()
            if len(watch.applied) + len(watch.available) != progress:
                progress, moved = len(watch.applied) + len(watch.available), now
            if not missing or now - moved > STALL or now > deadline:
                return missing
            if not self.agent.running:
                raise RuntimeError(f"the agent exited with {self.agent.returncode}\n{self.agent.tail()}")
            watch.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await watch.changed.wait()

    def stuck_detail(self) -> list[str]:
        """What the hub holds for the first stuck works, against the objects on the cluster."""
        lines = []
        for rid in self.stuck[:5]:
            last = self.watch.last.get(rid) or {}
            meta = last.get("resourceMeta") or {}
            reported: Any = None
            with contextlib.suppress(KeyError, ValueError, TypeError):
                reported = feedback(last, "status")
            live: dict[str, Any] = {}
            with contextlib.suppress(RuntimeError, ValueError):
                live = json.loads(
                    self.kubectl(
                        "get", meta.get("resource", ""), meta.get("name", ""), "-n", self.setup.namespace, "-o", "json"
                    )
                )
            conditions = {c.get("type"): c.get("status") for c in last.get("conditions") or []}
            version = (live.get("metadata") or {}).get("resourceVersion")
            lines.append(
                f"stuck: {meta.get('kind')}/{meta.get('name')} ({rid}): the hub has {conditions} and status feedback "
                f"{json.dumps(reported)[:200]}; the cluster has resourceVersion {version} and status "
                f"{json.dumps(live.get('status'))[:300]}"
            )
        return lines

    async def restart(self) -> None:
        """SIGTERM, start again, wait for /healthz and settle; what did the restart write, what did it change?"""
        agent, out, n = self.agent, self.out, len(self.written)
        versions = functools.partial(
            resource_versions, self.kubectl, self.setup.namespace, self.setup.agent_namespace, set(self.written)
        )
        before = await asyncio.to_thread(versions)
        api_before, events_before = await self.requests(), self.watch.events
        stopped_at = time.monotonic()
        code = await asyncio.to_thread(agent.stop)
        stop_seconds = time.monotonic() - stopped_at
        agent.start()
        await agent.wait_healthy(timeout=120)
        healthy_seconds = time.monotonic() - stopped_at - stop_seconds
        await asyncio.sleep(5.0)
        sample = await until_quiet(agent, timeout=max(120.0, n * 0.6))
        quiet_seconds = sample.at - stopped_at - stop_seconds
        api = delta(api_before, await self.requests())
        after = await asyncio.to_thread(versions)

        changed = sorted(k for k, v in before.items() if after.get(k) != v)
        api_writes = writes_of(api)
        total = sum(api_writes.values())
        out.add("restart: SIGTERM → exit", f"{stop_seconds:.1f} s (exit code {code})")
        out.add("restart: start → /healthz", f"{healthy_seconds:.1f} s")
        out.add(f"restart: start → no apiserver request for {QUIET:.0f} s", f"{quiet_seconds:.1f} s")
        out.add(
            "restart: apiserver writes (agent)",
            f"{sample.writes:.0f} = {sample.writes / n:.2f} per work",
            "≤ 3 per work, ideally 0",
        )
        out.add("restart: apiserver writes (apiserver, all clients)", f"{total} = {total / n:.2f} per work")
        out.add("restart: apiserver requests (agent)", f"{sample.requests:.0f}")
        out.add("restart: status stored at the hub", f"{self.watch.events - events_before}")
        if self.stuck:
            healed = sum(rid in self.watch.available for rid in self.stuck)
            out.add("restart: stuck works now Available", f"{healed} of {len(self.stuck)}")
        objects = [k for k in before if k.split("/")[0] in ("ConfigMap", "Deployment")]
        out.add(
            "restart: resourceVersion changed",
            f"{sum(k in changed for k in objects)} of {len(objects)} applied objects; "
            f"{len(changed)} of {len(before)} with Secrets and AppliedWorks",
            "0",
        )
        out.add("agent RSS after restart", f"{sample.rss_kib / MIB:.0f} MiB")
        out.notes.append(f"apiserver requests during the restart, all clients: {listing(api)}")
        if changed:
            out.notes.append(f"changed by the restart (first 10): {', '.join(changed[:10])}")
            out.notes.extend(await asyncio.to_thread(self.writers_of, changed[:3]))

    def writers_of(self, keys: list[str]) -> list[str]:
        """Who last wrote these objects (``Kind/name`` keys of :func:`resource_versions`), from managedFields."""
        lines = []
        for key in keys:
            kind, name = key.split("/", 1)
            where = (
                []
                if kind == "AppliedWork"
                else ["-n", self.setup.agent_namespace if kind == "Secret" else self.setup.namespace]
            )
            with contextlib.suppress(RuntimeError, ValueError):
                meta = json.loads(self.kubectl("get", kind.lower(), name, *where, "-o", "json"))["metadata"]
                fields = sorted(meta.get("managedFields") or [], key=lambda f: f.get("time") or "")
                managers = [
                    f"{f.get('manager')} {f.get('operation')}{'/' + f['subresource'] if f.get('subresource') else ''} "
                    f"at {f.get('time')}"
                    for f in fields
                ]
                lines.append(f"{key}: rv {meta.get('resourceVersion')}, written by {'; '.join(managers)}")
        return lines

    async def idle(self, seconds: float) -> None:
        agent, out, n = self.agent, self.out, len(self.written)
        api_before = await self.requests()
        start = await asyncio.to_thread(agent_sample, agent)
        await asyncio.sleep(seconds)
        end = await asyncio.to_thread(agent_sample, agent)
        api = delta(api_before, await self.requests())
        elapsed = end.at - start.at
        out.add(
            f"idle agent CPU ({elapsed:.0f} s, {n} works)",
            f"{(end.cpu - start.cpu) / elapsed * 1000:.1f} mCPU",
            "OCM agent ~13 mCPU at 100",
        )
        out.add(
            "idle apiserver requests (agent)",
            f"{(end.requests - start.requests) / elapsed:.2f}/s, {end.writes - start.writes:.0f} writes",
        )
        out.add("agent RSS after idle", f"{end.rss_kib / MIB:.0f} MiB")
        out.notes.append(f"apiserver requests while idle, all clients: {listing(api)}")


async def measure(
    setup: Setup, jobs: list[Job], *, concurrency: int, idle: float, written: dict[str, tuple[str, float]]
) -> Results:
    watch = StatusWatch(setup.api, setup.consumer)
    watch_task = asyncio.create_task(watch.run(), name="bench:status-watch")
    watch_task.add_done_callback(lambda _: watch.changed.set())
    run = Run(setup, watch, written)
    try:
        async with asyncio.timeout(30):
            await watch.ready.wait()
        await setup.agent.wait_healthy(timeout=120)
        phases: list[Callable[[], Awaitable[None]]] = [
            functools.partial(run.apply, jobs, concurrency=concurrency),
            run.restart,
            functools.partial(run.idle, idle),
        ]
        for phase in phases:
            if watch_task.done():
                watch_task.result()
                raise RuntimeError("the hub's status watch ended")
            await phase()
        return run.out
    finally:
        watch_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch_task


# -- setup and teardown --------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclasses.dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl: Kubectl
    pids: dict[str, int]
    """Our control plane's processes by name; empty for the user's cluster."""

    @property
    def external(self) -> bool:
        return not self.pids


@contextlib.contextmanager
def cluster(kubeconfig: str | None) -> Iterator[Cluster]:
    """The user's cluster, or a fresh ControlPlane (stopped on exit)."""
    if kubeconfig:
        binaries = build_binaries(tools_only=True)
        yield Cluster(Path(kubeconfig), Kubectl(binaries.kubectl, Path(kubeconfig)), {})
        return
    binaries = build_binaries()
    plane = ControlPlane(binaries.bin_dir)
    try:
        path = plane.start()
        yield Cluster(path, Kubectl(binaries.kubectl, path), {p.name: p.popen.pid for p in plane.procs})
    finally:
        plane.stop()


@contextlib.contextmanager
def namespaces(kubectl: Kubectl, *names: str) -> Iterator[None]:
    try:
        for name in names:
            kubectl("create", "namespace", name)
        yield
    finally:
        kubectl("delete", "namespace", *names, "--wait=false", "--ignore-not-found", check=False)


@contextlib.contextmanager
def agent_process(
    *,
    consumer: str,
    broker: mqtt_config.MQTTConfig,
    kubeconfig: Path,
    agent_namespace: str,
    directory: Path,
    extra_args: list[str],
) -> Iterator[AgentProcess]:
    config = directory / "agent-mqtt.yaml"
    config.write_text(agent_mqtt_yaml(host=broker.host, port=broker.port, source=SOURCE, consumer=consumer))
    agent = AgentProcess(
        consumer=consumer,
        workload_source_config=config,
        kubeconfig=kubeconfig,
        agent_namespace=agent_namespace,
        client_id=f"bench-agent-{uuid.uuid4().hex[:6]}",
        log=directory / "agent.log",
        extra_args=extra_args,
    )
    agent.start()
    try:
        yield agent
    finally:
        code = agent.stop()
        if code not in (0, None) and not agent.killed:
            print(f"the agent exited with {code}; log: {agent.log}", file=sys.stderr)


@contextlib.contextmanager
def environment(
    args: argparse.Namespace, jobs: list[Job], *, directory: Path, written: dict[str, tuple[str, float]]
) -> Iterator[Setup]:
    """The cluster, PostgreSQL, mosquitto, the hub, the consumer, two namespaces and the agent; all stopped (and,
    on a cluster we do not own, this run's AppliedWorks removed) on exit."""
    namespace = jobs[0].manifest["metadata"]["namespace"]
    tag = namespace.rsplit("-", 1)[1]
    agent_namespace = f"bench-agent-{tag}"
    with contextlib.ExitStack() as stack:
        where = stack.enter_context(cluster(args.kubeconfig))
        kubectl = where.kubectl
        if where.external:
            works = kubectl.items("appliedworks")
            stale = [w for w in works if (w.get("spec") or {}).get("consumer") == args.consumer]
            if stale:
                raise SystemExit(
                    f"{len(stale)} AppliedWorks of consumer {args.consumer} are on this cluster already; "
                    "pass another --consumer"
                )
        url = fresh_database(stack.enter_context(throwaway_postgres()))
        broker_file = stack.enter_context(throwaway_mosquitto())
        hub_args = ["--db-url", url, "--mqtt-config-file", str(broker_file), "--client-id", f"bench-hub-{tag}"]
        hub, ports = stack.enter_context(hub_process(hub_args))
        api = f"http://127.0.0.1:{ports.rest}/api/maestro/v1"
        httpx.post(f"{api}/consumers", json={"name": args.consumer}, timeout=10).raise_for_status()
        stack.enter_context(namespaces(kubectl, namespace, agent_namespace))
        if where.external:
            stack.callback(lambda: remove_works(kubectl, sorted(written)))
        agent = stack.enter_context(
            agent_process(
                consumer=args.consumer,
                broker=mqtt_config.load(broker_file),
                kubeconfig=where.kubeconfig,
                agent_namespace=agent_namespace,
                directory=directory,
                extra_args=args.agent_arg,
            )
        )
        yield Setup(
            api=api,
            pids={"hub": hub.pid, **where.pids},
            consumer=args.consumer,
            namespace=namespace,
            agent_namespace=agent_namespace,
            agent=agent,
            kubectl=kubectl,
        )


def print_results(results: Results, jobs: list[Job], *, cluster: str) -> None:
    counts = collections.Counter(j.kind for j in jobs)
    kinds = " + ".join(f"{c} {k}s" for k, c in sorted(counts.items()))
    print(f"\n{len(jobs)} works ({kinds}) through REST to one agent; cluster: {cluster}")
    width = max(len(what) for what, _, _ in results.rows)
    value_width = max(len(value) for _, value, _ in results.rows if len(value) < 60)
    for what, value, target in results.rows:
        print(f"{what:<{width}}  {value:<{value_width}}  {('target: ' + target) if target else ''}".rstrip())
    for note in results.notes:
        print(note)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=100, help="single resources to post (default 100)")
    parser.add_argument("--kind", choices=["configmap", "deployment", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=8, help="REST writers (default 8)")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement (default 20)")
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get(KUBECONFIG_ENV),
        help=f"use this cluster (default: ${KUBECONFIG_ENV}, else a fresh control plane from tests/e2e/cluster.py)",
    )
    parser.add_argument("--consumer", default="cluster1", help="consumer name (default cluster1)")
    parser.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more flag for maestro agent, e.g. --agent-arg=--workers=100 (repeatable)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the agent's log directory")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)

    jobs = jobs_for(args.kind, args.works, f"bench-apply-{uuid.uuid4().hex[:6]}")
    deployments = sum(j.kind == "Deployment" for j in jobs)
    if deployments > FAKE_NODE_PODS - 10 and not args.kubeconfig:
        print(
            f"warning: {deployments} Deployments, but the e2e control plane's kwok node holds {FAKE_NODE_PODS} pods",
            file=sys.stderr,
        )
    directory = Path(tempfile.mkdtemp(prefix="maestro-bench-agent-"))
    log = directory / "agent.log"
    written: dict[str, tuple[str, float]] = {}
    try:
        with environment(args, jobs, directory=directory, written=written) as setup:
            results = asyncio.run(measure(setup, jobs, concurrency=args.concurrency, idle=args.idle, written=written))
    except KeyboardInterrupt:
        print(f"interrupted; all that was started is stopped (agent log: {log})", file=sys.stderr)
        return 130
    except Exception:
        if log.exists():
            print(f"agent log kept: {log}", file=sys.stderr)
        raise
    if not args.keep_logs:
        shutil.rmtree(directory, ignore_errors=True)

    print_results(results, jobs, cluster=args.kubeconfig or "a fresh control plane (tests/e2e/cluster.py)")
    if args.keep_logs:
        print(f"agent log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
