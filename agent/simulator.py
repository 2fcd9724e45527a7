"""A simulated agent: speaks the agent side of the protocol with no Kubernetes behind it.

For tests, demos and benchmarks of the hub. The wire is :class:`agent.link.AgentLink`, the same code the
Kubernetes agent runs (spec resync on every (re)connect, decoding, per-resource ordering, sequence ids, status
hashes); this module is only the link's handler, keeping works in memory and answering as upstream's work agent
does:

* a spec create/update/resync_response is applied idempotently by ``(resourceid, resourceversion)``: older
  versions are dropped, a repeat re-sends the current status (the hub re-publishes what it has no status for,
  so a lost status must be repairable by a repeat);
* each applied work gets a ``status.update_request`` with a ``ManifestBundleStatus`` (Applied/Available, per
  manifest conditions and status feedback); a configurable failure rate reports ``Applied=False`` instead;
* a delete (``delete_request``, or any spec event carrying ``deletiontimestamp``) reports ``Deleted=True``
  (reason ``ManifestsDeleted``) and forgets the work;
* a ``status.resync_request`` is answered with ``status.resync_response`` for the works of that source
  whose hash differs from the listed one (an empty list means all of them; works the source does not list
  are left alone).

Works, counters and the per-resource :class:`History` survive :meth:`SimulatedAgent.stop` and
:meth:`SimulatedAgent.start`, so a stop/start is an agent restarting over a cluster that kept its works (with a
clean or a persistent MQTT session, as the config's ``sessionExpiry`` says).

Only the link and the protocol package are needed, so the simulator runs anywhere a broker is reachable. The
statuses it reports are built in :mod:`agent.simulated_status`; its command line is :mod:`agent.simulator_cli`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
from collections.abc import Callable
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from agent import link as agent_link
from agent import simulated_status
from protocol import mqtt, mqtt_config, payloads, statushash, types


@dataclasses.dataclass
class Work:
    """What the simulator holds for one resource bundle."""

    resource_id: str
    version: int
    source: str
    bundle: dict[str, Any]
    metadata: str
    status: payloads.ManifestBundleStatus
    status_hash: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.status_hash = statushash.status_hash(self.status)


@dataclasses.dataclass
class History:
    """What happened to one resource, in arrival order: ordering and idempotence are visible per resource, which
    totals in :class:`Counters` cannot show."""

    received: list[int] = dataclasses.field(default_factory=list)
    """The version of every spec event for this consumer that is not a delete, repeats and stale ones included."""
    applied: list[int] = dataclasses.field(default_factory=list)
    """The versions taken as the current work, simulated failures included (their status says ``Applied=False``)."""
    deletes: int = 0
    """Deletes handled (each one reports ``Deleted``, also for a work the agent did not hold)."""


@dataclasses.dataclass
class Counters:
    """Event counts, for assertions and benchmark output (:attr:`SimulatedAgent.counters` is a snapshot)."""

    received: int = 0
    applied: int = 0
    failed: int = 0
    duplicates: int = 0
    stale: int = 0
    other_cluster: int = 0
    deleted: int = 0
    malformed: int = 0
    status_sent: int = 0
    status_withheld: int = 0
    publish_failed: int = 0
    spec_resyncs_sent: int = 0
    status_resyncs_answered: int = 0
    handler_failed: int = 0
    """Spec events whose handling raised (a simulator bug: logged by the link, which goes on)."""


#: The :class:`Counters` fields the link counts (the others are the simulator's own).
_LINK_COUNTERS = (
    "received",
    "other_cluster",
    "malformed",
    "status_sent",
    "publish_failed",
    "spec_resyncs_sent",
    "handler_failed",
)


class SimulatedAgent:
    """An in-memory agent for one consumer; ``async with SimulatedAgent(...)`` runs it in the background."""

    def __init__(
        self,
        *,
        consumer: str,
        config: mqtt_config.MQTTConfig,
        source: str = "maestro",
        client_id: str | None = None,
        delay: float = 0.0,
        failure_rate: float = 0.0,
        seed: int | None = None,
        concurrency: int = 16,
        broker_options: dict[str, Any] | None = None,
        on_event: Callable[[CloudEvent], None] | None = None,
        report_status: bool = True,
    ) -> None:
        self.consumer = consumer
        self.source = source
        """The source a restored work belongs to, and the one the spec resync is addressed to."""
        self.delay = delay
        self.failure_rate = failure_rate
        self.report_status = report_status
        """``False`` applies works but publishes no status, as if every status were lost on the way; the hub's
        status resync (after this is set back to ``True``) is what must repair that."""
        self.works: dict[str, Work] = {}
        self.history: dict[str, History] = {}
        """Per resource id, from the first spec event for it; kept after a delete."""
        self.sent: collections.deque[CloudEvent] = collections.deque(maxlen=1000)
        """The last 1,000 events this agent published (bounded: a simulator may run for days)."""
        self.link = agent_link.AgentLink(
            consumer=consumer,
            config=config,
            handler=self,
            client_id=client_id,
            resync_source=source,
            concurrency=concurrency,
            broker_options=broker_options,
            on_event=on_event,
            on_sent=self.sent.append,
        )
        """The wire, kept for the agent's whole life (its sequence ids never go back across a restart)."""
        self._counts = Counters()
        self._random = random.Random(seed)

    @property
    def counters(self) -> Counters:
        """A snapshot of the counts: the wire's from the link, the rest the simulator's own."""
        wire = self.link.counters
        return dataclasses.replace(self._counts, **{name: getattr(wire, name) for name in _LINK_COUNTERS})

    # --- lifecycle
    # -------------------------------------------------------------------------------------------

    @property
    def broker(self) -> mqtt.Broker:
        """The MQTT link of the current run (a new one for every :meth:`start`)."""
        return self.link.broker

    async def __aenter__(self) -> SimulatedAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect and run in the background; the agent's state is kept from an earlier run, and the spec resync
        sent on connecting tells the sources about it."""
        await self.link.start()

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Stop handling events and disconnect, first waiting up to ``drain_timeout`` seconds for statuses
        already handed to the broker to be acknowledged (else a stop would look like a lost status)."""
        await self.link.stop(drain_timeout=drain_timeout)

    async def run(self) -> None:
        """Run until cancelled (the ``main()`` entry point)."""
        async with self:
            await self.link.wait()

    def restore(self, *, resource_id: str, version: int, bundle: dict[str, Any] | None = None) -> Work:
        """Hold a work as if applied in an earlier life (its cluster still has it, the hub may have forgotten it).

        Nothing is sent: the spec resync on the next connect lists it, and the source answers with the current
        spec or a delete.
        """
        bundle = bundle if bundle is not None else {"manifests": []}
        status = simulated_status.applied(bundle, version=version, failed=False)
        metadata = agent_link.default_metadata(resource_id)
        work = Work(resource_id, version, self.source, bundle, metadata, status)
        self.works[resource_id] = work
        return work

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; re-checked after every handled event."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.link.changed.clear()
                await self.link.changed.wait()

    async def send_spec_resync(self) -> None:
        """Tell the sources what we have; they answer with what changed and deletes for what they no longer
        have."""
        await self.link.send_spec_resync()

    # --- the link's handler
    # -----------------------------------------------------------------------------------

    def held(self) -> list[tuple[str, int]]:
        return [(w.resource_id, w.version) for w in self.works.values()]

    async def on_spec(self, spec: agent_link.SpecEvent) -> None:
        history = self.history.setdefault(spec.resource_id, History())
        if spec.deleting:
            history.deletes += 1
            await self._delete(spec)
            return
        history.received.append(spec.version)
        known = self.works.get(spec.resource_id)
        if known is not None and spec.version and spec.version < known.version:
            self._counts.stale += 1
            return
        if known is not None and spec.version == known.version:
            self._counts.duplicates += 1
            await self._send_status(known, action=types.UPDATE_REQUEST)
            return
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        failed = self.failure_rate > 0 and self._random.random() < self.failure_rate
        status = simulated_status.applied(spec.bundle, version=spec.version, failed=failed)
        work = Work(spec.resource_id, spec.version, spec.source, spec.bundle, spec.metadata, status)
        self.works[spec.resource_id] = work
        history.applied.append(spec.version)
        if failed:
            self._counts.failed += 1
        else:
            self._counts.applied += 1
        await self._send_status(work, action=types.UPDATE_REQUEST)

    async def _delete(self, spec: agent_link.SpecEvent) -> None:
        status = simulated_status.deleted(spec.version)
        known = self.works.pop(spec.resource_id, None)
        if known is None:
            gone = Work(spec.resource_id, spec.version, spec.source, {}, spec.metadata, status)
        else:
            gone = dataclasses.replace(known, bundle={}, status=status)
        self._counts.deleted += 1
        await self._send_status(gone, action=types.UPDATE_REQUEST)

    async def on_status_resync(self, source: str, hashes: dict[str, str]) -> None:
        mine = [w for w in self.works.values() if w.source == source]
        for work in mine:
            if not hashes or (work.resource_id in hashes and hashes[work.resource_id] != work.status_hash):
                await self._send_status(work, action=types.RESYNC_RESPONSE)
        self._counts.status_resyncs_answered += 1

    async def _send_status(self, work: Work, *, action: str) -> None:
        if not self.report_status:
            self._counts.status_withheld += 1
            return
        await self.link.publish_status(
            resource_id=work.resource_id,
            version=work.version,
            source=work.source,
            status=work.status,
            metadata=work.metadata,
            action=action,
            status_hash=work.status_hash,
        )
