"""A simulated agent: speaks the agent side of the protocol with no Kubernetes behind it.

For tests, demos and benchmarks of the hub. It keeps works in memory and answers as upstream's work agent
does:

* on every (re)connect, a ``spec.resync_request`` listing its ``(resourceID, resourceVersion)`` pairs, with
  ``originalsource`` ``""`` ("all sources");
* a spec create/update/resync_response is applied idempotently by ``(resourceid, resourceversion)``: events
  for another cluster are ignored, older versions dropped, a repeat re-sends the current status (the hub
  re-publishes what it has no status for, so a lost status must be repairable by a repeat);
* each applied work gets a ``status.update_request`` with a ``ManifestBundleStatus`` (Applied/Available, per
  manifest conditions and status feedback), a fresh ``sequenceid`` and the ``statushash``; a configurable
  failure rate reports ``Applied=False`` instead;
* a delete (``delete_request``, or any spec event carrying ``deletiontimestamp``) reports ``Deleted=True``
  (reason ``ManifestsDeleted``) and forgets the work;
* a ``status.resync_request`` is answered with ``status.resync_response`` for the works of that source
  whose hash differs from the listed one (an empty list means all of them; works the source does not list
  are left alone).

Works, counters and the per-resource :class:`History` survive :meth:`SimulatedAgent.stop` and
:meth:`SimulatedAgent.start`, so a stop/start is an agent restarting over a cluster that kept its works (with a
clean or a persistent MQTT session, as the config's ``sessionExpiry`` says).

The protocol package is the only dependency, so the simulator runs anywhere a broker is reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt, events, mqtt, mqtt_config, payloads, resync, sequence, statushash, topics, types
from protocol.errors import BrokerError, MaestroProtocolException, ProtocolError

logger = logging.getLogger(__name__)

ALL_SOURCES = ""


@dataclasses.dataclass
class Work:
    """What the simulator holds for one resource bundle."""

    resource_id: str
    version: int
    source: str
    bundle: dict[str, Any]
    metadata: str | None
    status: payloads.ManifestBundleStatus
    status_hash: str


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
    """Event counts, for assertions and benchmark output."""

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
        broker_options: dict[str, Any] | None = None,
        on_event: Callable[[CloudEvent], None] | None = None,
        report_status: bool = True,
    ) -> None:
        self.consumer = consumer
        self.on_event = on_event
        """Called with every well-formed event received, before it is handled (tests and benchmarks use it to
        record what arrived when)."""
        self.source = source
        self.agent_id = f"{consumer}-work-agent"
        self.config = config
        self.delay = delay
        self.failure_rate = failure_rate
        self.report_status = report_status
        """``False`` applies works but publishes no status, as if every status were lost on the way; the hub's
        status resync (after this is set back to ``True``) is what must repair that."""
        self.works: dict[str, Work] = {}
        self.history: dict[str, History] = {}
        """Per resource id, from the first spec event for it; kept after a delete."""
        self.counters = Counters()
        self.sent: collections.deque[CloudEvent] = collections.deque(maxlen=1000)
        """The last 1,000 events this agent published (bounded: a simulator may run for days)."""
        self._random = random.Random(seed)
        self._sequence = sequence.SequenceGenerator()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._subscription = topics.fill(config.topics.source_events, consumer=consumer)
        self._client_id = client_id or f"{self.agent_id}-client"
        self._broker_options = dict(broker_options or {})
        self._broker: mqtt.Broker | None = None
        self._runner: asyncio.Task[None] | None = None

    # --- lifecycle
    # -------------------------------------------------------------------------------------------

    @property
    def broker(self) -> mqtt.Broker:
        """The MQTT link of the current run (a new one for every :meth:`start`)."""
        if self._broker is None:
            raise RuntimeError(f"simulated agent {self.consumer} is not started")
        return self._broker

    async def __aenter__(self) -> SimulatedAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect and run in the background; the agent's state is kept from an earlier run, and the spec resync
        sent on connecting tells the sources about it."""
        if self._broker is not None:
            raise RuntimeError(f"simulated agent {self.consumer} is already started")
        broker = mqtt.Broker(
            self.config, client_id=self._client_id, subscriptions=[self._subscription], **self._broker_options
        )
        await broker.start()
        self._broker = broker
        self._runner = asyncio.create_task(self._run_loops(broker), name=f"simulator:{self.consumer}")

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Stop handling events and disconnect, first waiting up to ``drain_timeout`` seconds for statuses
        already handed to the broker to be acknowledged (else a stop would look like a lost status)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        broker, self._broker = self._broker, None
        if broker is not None:
            with contextlib.suppress(BrokerError):
                await broker.drain(timeout=drain_timeout)
            await broker.close()

    async def run(self) -> None:
        """Run until cancelled (the ``main()`` entry point)."""
        async with self:
            assert self._runner is not None
            await self._runner

    def restore(self, *, resource_id: str, version: int, bundle: dict[str, Any] | None = None) -> Work:
        """Hold a work as if applied in an earlier life (its cluster still has it, the hub may have forgotten it).

        Nothing is sent: the spec resync on the next connect lists it, and the source answers with the current
        spec or a delete.
        """
        bundle = bundle if bundle is not None else {"manifests": []}
        status = _status(bundle, version=version, failed=False)
        work = Work(
            resource_id=resource_id,
            version=version,
            source=self.source,
            bundle=bundle,
            metadata=_default_metadata(resource_id),
            status=status,
            status_hash=statushash.status_hash(status),
        )
        self.works[resource_id] = work
        return work

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; re-checked after every handled event."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # --- loops
    # -----------------------------------------------------------------------------------------------

    async def _run_loops(self, broker: mqtt.Broker) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._resync_on_connect(broker), name=f"simulator-resync:{self.consumer}")
            group.create_task(self._receive(broker), name=f"simulator-receive:{self.consumer}")

    async def _resync_on_connect(self, broker: mqtt.Broker) -> None:
        async for _ in broker.connections():
            await self._guard(self.send_spec_resync())

    async def _receive(self, broker: mqtt.Broker) -> None:
        async for item in broker.messages():
            self.counters.received += 1
            try:
                event = cloudevents_mqtt.decode(item.message)
                event_type = types.event_type(event)
            except ProtocolError as exc:
                self.counters.malformed += 1
                logger.warning("simulator %s: dropped malformed message on %s: %s", self.consumer, item.topic, exc)
                self._notify()
                continue
            if self.on_event is not None:
                self.on_event(event)
            if event_type.subresource == types.SPEC:
                rid = event.get_extension(types.EXT_RESOURCE_ID)
                lock = self._locks.setdefault(str(rid), asyncio.Lock())
                if self.delay > 0:
                    # NB: one task per event so a slow apply does not stall other works; the per-work lock
                    # keeps each work's events in order.
                    task = asyncio.create_task(self._locked(lock, event), name=f"simulator-apply:{rid}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    await self._locked(lock, event)
            elif event_type.action == types.RESYNC_REQUEST:
                await self._guard(self._answer_status_resync(event))
            self._notify()

    async def _locked(self, lock: asyncio.Lock, event: CloudEvent) -> None:
        async with lock:
            await self._guard(self._handle_spec(event))
        self._notify()

    async def _guard(self, work: Any) -> None:
        """Count and log what fails, and go on: one bad event or one publish that timed out while the broker was
        away must not stop the agent (the next resync repairs a lost message)."""
        try:
            await work
        except BrokerError as exc:
            self.counters.publish_failed += 1
            logger.warning("simulator %s: publish failed: %s", self.consumer, exc)
        except MaestroProtocolException as exc:
            self.counters.malformed += 1
            logger.warning("simulator %s: cannot handle event: %s", self.consumer, exc)

    def _notify(self) -> None:
        self._changed.set()

    # --- spec side
    # -------------------------------------------------------------------------------------------

    async def _handle_spec(self, event: CloudEvent) -> None:
        if types.str_extension(event, types.EXT_CLUSTER_NAME, default="") != self.consumer:
            self.counters.other_cluster += 1
            return
        resource_id = types.str_extension(event, types.EXT_RESOURCE_ID)
        version = types.int_extension(event, types.EXT_RESOURCE_VERSION, default=0)
        deleting = types.timestamp_extension(event, types.EXT_DELETION_TIMESTAMP) is not None
        history = self.history.setdefault(resource_id, History())
        if deleting or types.event_type(event).action == types.DELETE_REQUEST:
            history.deletes += 1
            await self._delete(event, resource_id, version)
            return
        history.received.append(version)
        known = self.works.get(resource_id)
        if known is not None and version and version < known.version:
            self.counters.stale += 1
            return
        if known is not None and version == known.version:
            self.counters.duplicates += 1
            await self._send_status(known, action=types.UPDATE_REQUEST)
            return
        bundle = events.data_object(event)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        failed = self.failure_rate > 0 and self._random.random() < self.failure_rate
        status = _status(bundle, version=version, failed=failed)
        work = Work(
            resource_id=resource_id,
            version=version,
            source=event.get_source(),
            bundle=bundle,
            metadata=_metadata(event),
            status=status,
            status_hash=statushash.status_hash(status),
        )
        self.works[resource_id] = work
        history.applied.append(version)
        if failed:
            self.counters.failed += 1
        else:
            self.counters.applied += 1
        await self._send_status(work, action=types.UPDATE_REQUEST)

    async def _delete(self, event: CloudEvent, resource_id: str, version: int) -> None:
        known = self.works.pop(resource_id, None)
        now = _now()
        status = payloads.ManifestBundleStatus(
            conditions=[_condition("Deleted", "True", "ManifestsDeleted", "The manifests are deleted", version, now)],
            resourceStatus=[],
        )
        gone = Work(
            resource_id=resource_id,
            version=known.version if known is not None else version,
            source=known.source if known is not None else event.get_source(),
            bundle={},
            metadata=known.metadata if known is not None else _metadata(event),
            status=status,
            status_hash=statushash.status_hash(status),
        )
        self.counters.deleted += 1
        await self._send_status(gone, action=types.UPDATE_REQUEST)

    async def send_spec_resync(self) -> None:
        """Tell the sources what we have; they answer with what changed and deletes for what they no longer
        have."""
        pairs = [(w.resource_id, w.version) for w in self.works.values()]
        topic = self._agent_topic(self.source, broadcast=True)
        for data in resync.spec_resync_payloads(pairs):
            event = events.make_event(
                type=types.manifestbundle_type("spec", types.RESYNC_REQUEST),
                source=self.agent_id,
                data=dict(data),
                extensions={types.EXT_CLUSTER_NAME: self.consumer, types.EXT_ORIGINAL_SOURCE: ALL_SOURCES},
            )
            await self._publish(topic, event)
            self.counters.spec_resyncs_sent += 1

    # --- status side
    # -----------------------------------------------------------------------------------------

    async def _answer_status_resync(self, event: CloudEvent) -> None:
        listed = {h["resourceID"]: h["statusHash"] for h in payloads.read_status_resync(event.get_data())}
        mine = [w for w in self.works.values() if w.source == event.get_source()]
        for work in mine:
            if not listed or (work.resource_id in listed and listed[work.resource_id] != work.status_hash):
                await self._send_status(work, action=types.RESYNC_RESPONSE)
        self.counters.status_resyncs_answered += 1

    async def _send_status(self, work: Work, *, action: str) -> None:
        if not self.report_status:
            self.counters.status_withheld += 1
            return
        event = events.make_event(
            type=types.manifestbundle_type("status", action),
            source=self.agent_id,
            data=dict(work.status),
            extensions={
                types.EXT_RESOURCE_ID: work.resource_id,
                types.EXT_RESOURCE_VERSION: work.version,
                types.EXT_CLUSTER_NAME: self.consumer,
                types.EXT_ORIGINAL_SOURCE: work.source,
                types.EXT_SEQUENCE_ID: self._sequence.next(),
                types.EXT_STATUS_HASH: work.status_hash,
                types.EXT_METADATA: work.metadata,
            },
        )
        await self._publish(self._agent_topic(work.source), event)
        self.counters.status_sent += 1

    def _agent_topic(self, source: str, *, broadcast: bool = False) -> str:
        if broadcast and self.config.topics.agent_broadcast:
            return topics.fill(self.config.topics.agent_broadcast, source=source, consumer=self.consumer)
        return topics.fill(self.config.topics.agent_events, source=source, consumer=self.consumer)

    async def _publish(self, topic: str, event: CloudEvent) -> None:
        self.sent.append(event)
        await self.broker.publish(topic, cloudevents_mqtt.encode(event, binary=self.broker.binary_mode))


def _now() -> str:
    return types.format_timestamp(datetime.now(UTC).replace(microsecond=0))


def _condition(
    kind: str, status: payloads.ConditionStatus, reason: str, message: str, generation: int, when: str
) -> payloads.Condition:
    return payloads.Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        lastTransitionTime=when,
        observedGeneration=generation,
    )


def _metadata(event: CloudEvent) -> str:
    """The work metadata to echo: the spec event's, else a minimal one named by the resource id."""
    value = event.get_extension(types.EXT_METADATA)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return _default_metadata(str(event.get_extension(types.EXT_RESOURCE_ID)))


def _default_metadata(resource_id: str) -> str:
    return json.dumps({"name": resource_id}, separators=(",", ":"))


def _json_feedback(bundle: dict[str, Any], meta: dict[str, Any], replicas: object) -> list[payloads.FeedbackValue]:
    """JsonRaw values for the manifest's ``JSONPaths`` feedback rules on ``.status``: a plausible object status
    (for a workload, all replicas ready), as a real agent would read it from the cluster."""
    simulated: dict[str, Any] = {"observedGeneration": 1}
    if isinstance(replicas, int):
        simulated |= {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
        }
    out: list[payloads.FeedbackValue] = []
    configs = bundle.get("manifestConfigs")
    for config in configs if isinstance(configs, list) else []:
        ident = config.get("resourceIdentifier") if isinstance(config, dict) else None
        if (
            not isinstance(ident, dict)
            or ident.get("name") != meta.get("name")
            or ident.get("namespace", "") != meta.get("namespace", "")
        ):
            continue
        for rule in config.get("feedbackRules") or []:
            for path in rule.get("jsonPaths") or [] if isinstance(rule, dict) else []:
                if isinstance(path, dict) and path.get("path") == ".status":
                    raw = json.dumps(simulated, separators=(",", ":"), sort_keys=True)
                    out.append(
                        {"name": str(path.get("name", "status")), "fieldValue": {"type": "JsonRaw", "jsonRaw": raw}}
                    )
    return out


def _status(bundle: dict[str, Any], *, version: int, failed: bool) -> payloads.ManifestBundleStatus:
    when = _now()
    applied: payloads.ConditionStatus = "False" if failed else "True"
    manifests = bundle.get("manifests")
    resource_status: list[payloads.ManifestCondition] = []
    for ordinal, manifest in enumerate(manifests if isinstance(manifests, list) else []):
        if not isinstance(manifest, dict):
            continue
        api_version = str(manifest.get("apiVersion", ""))
        group, _, api = api_version.rpartition("/")
        kind = str(manifest.get("kind", ""))
        meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
        spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        feedback: list[payloads.FeedbackValue] = (
            [{"name": "ReadyReplicas", "fieldValue": {"type": "Integer", "integer": replicas}}]
            if isinstance(replicas, int) and not failed
            else [{"name": "Simulated", "fieldValue": {"type": "String", "string": "failed" if failed else "ok"}}]
        )
        if not failed:
            feedback += _json_feedback(bundle, meta or {}, replicas)
        resource_status.append(
            payloads.ManifestCondition(
                resourceMeta=payloads.ResourceMeta(
                    ordinal=ordinal,
                    group=group,
                    version=api,
                    kind=kind,
                    resource=kind.lower() + "s" if kind else "",
                    name=str((meta or {}).get("name", "")),
                    namespace=str((meta or {}).get("namespace", "")),
                ),
                statusFeedback=payloads.StatusFeedback(values=feedback),
                conditions=[
                    _condition("Applied", applied, "AppliedManifestComplete", "Apply manifest complete", version, when),
                    _condition("Available", applied, "ResourceAvailable", "Resource is available", version, when),
                    _condition("StatusFeedbackSynced", "True", "StatusFeedbackSynced", "", version, when),
                ],
            )
        )
    if failed:
        conditions = [
            _condition("Applied", "False", "AppliedManifestWorkFailed", "Simulated apply failure", version, when),
            _condition("Available", "Unknown", "ResourcesNotAvailable", "Not applied", version, when),
        ]
    else:
        conditions = [
            _condition("Applied", "True", "AppliedManifestWorkComplete", "Apply manifest work complete", version, when),
            _condition("Available", "True", "ResourcesAvailable", "All resources are available", version, when),
        ]
    return payloads.ManifestBundleStatus(conditions=conditions, resourceStatus=resource_status)


def main(argv: Sequence[str] | None = None) -> int:
    """``maestro agent --simulate``: run one simulated agent until interrupted."""
    parser = argparse.ArgumentParser(prog="maestro agent --simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--consumer-name", "--consumer", dest="consumer", required=True)
    parser.add_argument("--mqtt-config", "--message-broker-config-file", dest="mqtt_config", required=True)
    parser.add_argument("--source", default="maestro", help="source id the resync is addressed to")
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to 'apply' each work")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="fraction of applies reported failed")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gmqtt").setLevel(logging.WARNING)  # NB: it logs every packet at INFO.
    config = mqtt_config.load(args.mqtt_config)
    agent = SimulatedAgent(
        consumer=args.consumer,
        config=config,
        source=args.source,
        client_id=args.client_id,
        delay=args.delay,
        failure_rate=args.failure_rate,
        seed=args.seed,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(agent.run())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
