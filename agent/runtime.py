"""The running agent: one object holding the cluster client, the broker link and the parts between them, started
and stopped as a unit, and put in kopf's memo so the handlers reach it.

Besides kopf's handlers, three loops run here: the reporter (status to the hub), the status sync (every
``status_sync_interval`` each work is reconciled from the watch cache, which also reads the objects that are not
watched), and the eviction of works that no hub has claimed for ``eviction_grace_period``. Watch events and the
status sync go through :meth:`Runtime.trigger`, which coalesces bursts into one reconcile per work.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import kopf

from agent import handlers, metrics, works
from agent.kube import Kube, KubeError
from agent.link import AgentLink
from agent.receiver import Receiver
from agent.reconcile import Engine, Outcome, PayloadMissing
from agent.recorder import Recorder
from agent.reporter import Reporter
from agent.settings import AgentSettings
from agent.watcher import Watcher
from protocol import mqtt_config, topics

logger = logging.getLogger(__name__)


def hub_identity(config: mqtt_config.MQTTConfig) -> str:
    """Which hub a work came from: the broker and its topics (a work from another hub is not ours to keep)."""
    text = f"{config.host}:{config.port}/{config.topics.source_events}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def topic_source(config: mqtt_config.MQTTConfig) -> str | None:
    """The hub's source id as the agent's own topics name it (``sources/<source>/consumers/...``), if they do.

    Spec events claiming any other source are refused: they can only come from someone else on the broker.
    """
    parts = topics.strip_share(config.topics.source_events).split("/")
    source = parts[1] if len(parts) > 2 and parts[0] == "sources" else None
    return source if source and source != topics.WILDCARD else None


class Runtime:
    def __init__(self, settings: AgentSettings, kube: Kube, config: mqtt_config.MQTTConfig) -> None:
        self.settings = settings
        self.kube = kube
        self.hub = hub_identity(config)
        self.store: dict[str, dict[str, Any]] = {}
        self.recorder = Recorder(kube, instance=settings.client_id)
        self.watcher = Watcher(kube, on_change=lambda name: self.trigger(name, "watch"))
        self.link = AgentLink(
            consumer=settings.consumer,
            config=config,
            handler=self,  # NB: delegates to the receiver, created below.
            agent_id=settings.client_id,
            hub_source=settings.hub_source or topic_source(config),
        )
        self.reporter = Reporter(self.link)
        self.engine = Engine(
            kube,
            consumer=settings.consumer,
            namespace=settings.namespace,
            max_json_raw_length=settings.max_json_raw_length,
            recorder=self.recorder,
            watcher=self.watcher,
            on_status=self._on_status,
        )
        self.receiver = Receiver(
            kube,
            consumer=settings.consumer,
            namespace=settings.namespace,
            hub=self.hub,
            engine=self.engine,
            reporter=self.reporter,
            store=self.store,
        )
        self.kopf_ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._scheduled: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._unclaimed: dict[str, float] = {}
        self.failed: BaseException | None = None
        self._stopping = False

    # --- link.Handler, delegated
    # ------------------------------------------------------------------------------------

    def held(self) -> Any:
        return self.receiver.held()

    async def on_spec(self, spec: Any) -> None:
        await self.receiver.on_spec(spec)

    async def on_status_resync(self, source: str, hashes: dict[str, str]) -> None:
        await self.receiver.on_status_resync(source, hashes)

    # --- lifecycle
    # -------------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the AppliedWorks already on the cluster, so the first spec resync lists them."""
        listing = await self.kube.request("GET", works.APPLIED_WORK.path())
        for item in listing.get("items") or []:
            if (item.get("spec") or {}).get("consumer") == self.settings.consumer:
                self.store[item["metadata"]["name"]] = item
        metrics.WORKS.set(len(self.store))
        await self._load_payloads()

    async def _load_payloads(self) -> None:
        """The works' bundles in one LIST of their Secrets (not one GET per work when kopf resumes them all), if
        this agent may list Secrets in its namespace (the chart does not grant it: least privilege)."""
        if not self.store or not await self._may("list", "secrets", self.settings.namespace):
            return
        try:
            listing = await self.kube.request(
                "GET", works.SECRET.path(self.settings.namespace), query={"labelSelector": works.PAYLOAD_LABEL}
            )
        except KubeError as exc:
            logger.warning("could not list the works' payload Secrets (each is read on its own): %s", exc.message)
            return
        for secret in listing.get("items") or []:
            name = ((secret.get("metadata") or {}).get("labels") or {}).get(works.PAYLOAD_LABEL, "")
            aw = self.store.get(name)
            if aw is None:
                continue
            try:
                bundle = works.decode_payload(secret)
            except ValueError:
                continue
            digest = works.bundle_hash(bundle)
            if digest == ((aw.get("spec") or {}).get("payload") or {}).get("hash"):
                self.engine.payloads[name] = (digest, bundle)

    async def _may(self, verb: str, resource: str, namespace: str) -> bool:
        """Whether this agent may ``verb`` ``resource`` in ``namespace`` (no when the review fails)."""
        try:
            return await self.kube.allowed(verb, resource, namespace=namespace)
        except KubeError:
            return False

    async def run(self) -> None:
        """Run until :meth:`stop`; a part that crashes stops the whole agent (and is re-raised)."""
        await self.load()
        settings = kopf.OperatorSettings()
        settings.persistence.finalizer = works.FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=works.GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=works.GROUP, key="last-handled")
        settings.posting.enabled = False
        settings.scanning.disabled = True  # NB: AppliedWork is known; no cluster-wide CRD watch (and no RBAC for it).
        settings.watching.server_timeout = 300
        settings.batching.worker_limit = self.settings.workers
        settings.batching.idle_timeout = 0.5  # NB: kopf's 5 s keeps a finished worker's slot: 16 slots = 3 works/s.
        memo = kopf.Memo(runtime=self)
        self._spawn(
            kopf.operator(
                registry=handlers.registry,
                settings=settings,
                standalone=True,
                clusterwide=True,
                stop_flag=self._stop,
                ready_flag=self.kopf_ready,
                memo=memo,
            ),
            "kopf",
        )
        await self.link.start()
        self._spawn(self.link.wait(), "link")
        self._spawn(self.reporter.run(), "reporter")
        self._spawn(self._status_sync(), "status-sync")
        self._spawn(self._evictions(), "eviction")
        self._spawn(self._gauges(), "gauges")
        await self._stop.wait()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=f"agent:{name}")
        task.add_done_callback(self._crashed)
        self._tasks.append(task)

    def _crashed(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or self._stop.is_set() or self._stopping:
            return
        exc = task.exception()
        if exc is None and task.get_name() == "agent:kopf":
            logger.info("kopf stopped (a signal): stopping the agent")
            self._stop.set()
            return
        logger.error("agent part %s stopped: %r", task.get_name(), exc)
        self.failed = exc or RuntimeError(f"{task.get_name()} ended")
        self._stop.set()

    async def stop(self) -> None:
        """Stop our parts first (the link drains what it already handed to the broker), then kopf: kopf cancels
        every task it finds still running when it exits, and would wait for ours."""
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.link.stop()
        ours = [t for t in [*self._tasks, *self._scheduled.values()] if t.get_name() != "agent:kopf"]
        for task in ours:
            task.cancel()
        await asyncio.gather(*ours, return_exceptions=True)
        await self.watcher.close()
        await self.recorder.close()
        self._stop.set()
        kopf_tasks = [t for t in self._tasks if t.get_name() == "agent:kopf"]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*kopf_tasks, return_exceptions=True)

    def connection_info(self) -> kopf.ConnectionInfo:
        cfg = self.kube.api.configuration
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        scheme, _, value = (token or "").partition(" ")
        return kopf.ConnectionInfo(
            server=str(cfg.host),
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            scheme=scheme or None,
            token=value or None,
        )

    # --- what the handlers call
    # ---------------------------------------------------------------------------------------

    def observe(self, kind: str | None, aw: dict[str, Any]) -> None:
        name = aw["metadata"]["name"]
        if kind == "DELETED":
            self.store.pop(name, None)
            self.reporter.forget(name)
            self.recorder.forget(name)
            self._unclaimed.pop(name, None)
            saved = self.engine.forget(name)
            if saved is not None:
                logger.info("work %s was deleted by hand while the hub still wants it: creating it again", name)
                self._spawn_once(self.receiver.write(name, saved.spec, bundle=saved.bundle), f"recreate:{name}")
        else:
            self.store[name] = aw
        metrics.WORKS.set(len(self.store))

    async def reconcile(self, aw: dict[str, Any], *, why: str) -> Outcome:
        aw = copy.deepcopy(aw)
        started = time.monotonic()
        try:
            return await self.engine.reconcile(aw, why=why)
        except PayloadMissing as exc:
            name = aw["metadata"]["name"]
            logger.warning("work %s: %s; asking the hub to send it again", name, exc)
            if name not in self.receiver.lost:
                self.receiver.lost.add(name)
                self._spawn_once(self.link.send_spec_resync(), f"resync-lost:{name}")
            return Outcome(done=False, message=str(exc))
        except KubeError as exc:
            metrics.APPLY_FAILED.inc()
            return Outcome(done=False, message=exc.message)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    async def finalize(self, aw: dict[str, Any]) -> Outcome:
        aw = copy.deepcopy(aw)
        outcome = await self.engine.finalize(aw)
        spec = aw["spec"]
        if outcome.done and spec.get("deleteRequested"):
            metrics.DELETED.inc()
            self.reporter.deleted(
                resource_id=aw["metadata"]["name"],
                version=int(spec.get("resourceVersion") or 0),
                source=str(spec.get("source", "")),
                metadata=str(spec.get("workMetadata") or ""),
                consumer=self.settings.consumer,
            )
        return outcome

    async def _on_status(self, aw: Any) -> None:
        if aw["metadata"]["name"] in self.store:
            self.store[aw["metadata"]["name"]] = aw
        self.reporter.update(aw)

    def trigger(self, name: str, why: str) -> None:
        """Reconcile ``name`` soon; triggers while one runs make exactly one more run after it."""
        if name in self._scheduled:
            self._again.add(name)
            return
        self._scheduled[name] = asyncio.create_task(self._triggered(name, why), name=f"agent:trigger:{name}")

    async def _triggered(self, name: str, why: str) -> None:
        try:
            while True:
                await asyncio.sleep(0.05)  # NB: a burst of watch events becomes one reconcile.
                self._again.discard(name)
                aw = self.store.get(name)
                if aw is None or aw["metadata"].get("deletionTimestamp") or "status" not in aw:
                    return
                await self.reconcile(aw, why=why)
                if name not in self._again:
                    return
        except Exception:
            logger.exception("reconcile of %s (%s) failed", name, why)
        finally:
            self._scheduled.pop(name, None)

    def _spawn_once(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(self._logged(coro, name), name=f"agent:{name}")
        self._scheduled[name] = task
        task.add_done_callback(lambda _: self._scheduled.pop(name, None))

    @staticmethod
    async def _logged(coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except Exception:
            logger.exception("%s failed", name)

    # --- loops
    # ------------------------------------------------------------------------------------------------

    async def _status_sync(self) -> None:
        await self.kopf_ready.wait()
        while True:
            await asyncio.sleep(self.settings.status_sync_interval)
            for name, aw in list(self.store.items()):
                if self._needs_poll(aw):
                    self.trigger(name, "status-sync")

    def _needs_poll(self, aw: dict[str, Any]) -> bool:
        """Whether a work has something no watch reports: an object the agent did not write (``ReadOnly``, or one
        ``CreateOnly`` found), a kind whose watch is not running, or a manifest that is not applied yet."""
        status = aw.get("status") or {}
        entries = status.get("manifests") or []
        if not entries or len(entries) != len((aw.get("spec") or {}).get("manifests") or []):
            return True
        for entry in entries:
            if not entry.get("written") or not entry.get("resource"):
                return True
            if not self.watcher.watching(entry.get("group", ""), entry.get("version", ""), entry["resource"]):
                return True
            if not any(c.get("type") == "Applied" and c.get("status") == "True" for c in entry.get("conditions") or []):
                return True
        return False

    async def _evictions(self) -> None:
        """Works from another hub (another broker or topics), not claimed again within the grace period, go."""
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.settings.eviction_grace_period / 10)))
            now = time.monotonic()
            for name, aw in list(self.store.items()):
                spec = aw.get("spec") or {}
                if spec.get("hub") == self.hub:
                    self._unclaimed.pop(name, None)
                    continue
                if spec.get("deleteRequested"):
                    continue
                since = self._unclaimed.setdefault(name, now)
                if now - since >= self.settings.eviction_grace_period:
                    logger.warning(
                        "evicting work %s: no hub has claimed it for %ss", name, self.settings.eviction_grace_period
                    )
                    self.recorder.event(
                        aw, "Warning", "Evicted", "No hub claimed this work within the eviction grace period"
                    )
                    await self.receiver.request_delete(name, aw)

    async def _gauges(self) -> None:
        while True:
            metrics.BROKER_CONNECTED.set(1 if self.link.connected else 0)
            metrics.KUBE_REQUESTS.labels("all").set(self.kube.requests)
            metrics.KUBE_REQUESTS.labels("write").set(self.kube.writes)
            await asyncio.sleep(1.0)
