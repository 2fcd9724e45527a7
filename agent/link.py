"""The agent's side of the wire, shared by the Kubernetes agent and the simulator.

An :class:`AgentLink` owns the MQTT connection of one consumer and speaks upstream's work-agent protocol:

* on every (re)connect it sends a ``spec.resync_request`` listing what the agent holds (its handler says what),
  with ``originalsource`` ``""`` ("all sources");
* it decodes each spec event for its consumer into a :class:`SpecEvent` and hands it to the handler; events
  for another cluster, from a source other than ``hub_source`` (when set) and malformed messages are counted,
  logged and dropped;
* a ``status.resync_request`` goes to the handler as ``(source, {resource id: status hash})``;
* :meth:`AgentLink.publish_status` sends a ``status.update_request`` (or ``resync_response``) with a new
  ``sequenceid`` and the ``statushash`` of the status.

Spec events of one resource are handled in arrival order; different resources run concurrently, up to
``concurrency`` at a time (the receive loop waits for a free slot, so a slow handler back-pressures the broker
instead of piling up tasks). A resource's lock lives while it has events queued or running, and the slot and the
lock are given back when the event's task is done, also if it is cancelled before it ever ran (a stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol

from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt, events, mqtt, mqtt_config, payloads, resync, sequence, statushash, topics, types
from protocol.errors import BrokerError, MaestroProtocolException, ProtocolError

logger = logging.getLogger(__name__)

ALL_SOURCES: Final = ""


@dataclasses.dataclass(frozen=True)
class SpecEvent:
    """One spec event for this consumer, decoded."""

    resource_id: str
    version: int
    source: str
    action: str
    deleting: bool
    """A ``delete_request``, or any spec event carrying ``deletiontimestamp`` (a resync delete marker)."""
    bundle: dict[str, Any]
    """The ``ManifestBundle`` data (``{}`` for a delete)."""
    metadata: str
    """The work metadata to echo in statuses (JSON text)."""
    event: CloudEvent


class Handler(Protocol):
    """What an agent plugs into the link."""

    def held(self) -> Iterable[tuple[str, int]]:
        """``(resource id, version)`` of every work the agent holds, for the spec resync."""
        ...

    async def on_spec(self, spec: SpecEvent) -> None: ...

    async def on_status_resync(self, source: str, hashes: dict[str, str]) -> None:
        """Answer with the statuses of ``source``'s works whose hash differs (all of them if ``hashes`` is
        empty), using :meth:`AgentLink.publish_status` with ``action=RESYNC_RESPONSE``."""
        ...


@dataclasses.dataclass
class LinkCounters:
    received: int = 0
    malformed: int = 0
    other_cluster: int = 0
    foreign_source: int = 0
    handler_failed: int = 0
    status_sent: int = 0
    publish_failed: int = 0
    spec_resyncs_sent: int = 0
    status_resyncs_received: int = 0


class AgentLink:
    """The MQTT link of one agent; ``async with AgentLink(...)`` runs it in the background."""

    def __init__(
        self,
        *,
        consumer: str,
        config: mqtt_config.MQTTConfig,
        handler: Handler,
        agent_id: str | None = None,
        client_id: str | None = None,
        hub_source: str | None = None,
        resync_source: str = "maestro",
        concurrency: int = 16,
        broker_options: dict[str, Any] | None = None,
        on_event: Callable[[CloudEvent], None] | None = None,
        on_sent: Callable[[CloudEvent], None] | None = None,
    ) -> None:
        self.consumer = consumer
        self.config = config
        self.handler = handler
        self.agent_id = agent_id or f"{consumer}-work-agent"
        """The CloudEvents ``source`` of what this agent sends (upstream's ``--cloudevents-client-id``)."""
        self.client_id = client_id or f"{self.agent_id}-client"
        self.hub_source = hub_source
        """When set, spec events from any other source are refused."""
        self.resync_source = resync_source
        """Source name put into a ``+`` source segment of the publish topics for the spec resync."""
        self.on_event = on_event
        """Called with every well-formed event received, before it is handled."""
        self.on_sent = on_sent
        """Called with every event this link publishes, just before it is handed to the broker."""
        self.counters = LinkCounters()
        self.changed = asyncio.Event()
        """Set after every handled message (waiters clear it first)."""
        self._sequence = sequence.SequenceGenerator()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, int] = {}
        """Spec tasks per resource, queued or running: its lock is dropped when this reaches zero."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions = [topics.fill(config.topics.source_events, consumer=consumer)]
        if config.topics.source_broadcast:
            # NB: as configured, wildcards and all (as upstream's agent does): a broadcast names no consumer.
            self._subscriptions.append(config.topics.source_broadcast)
        self._broker_options = dict(broker_options or {})
        self._broker: mqtt.Broker | None = None
        self._runner: asyncio.Task[None] | None = None

    # --- lifecycle
    # -------------------------------------------------------------------------------------------

    @property
    def broker(self) -> mqtt.Broker:
        if self._broker is None:
            raise RuntimeError(f"agent link {self.consumer} is not started")
        return self._broker

    @property
    def connected(self) -> bool:
        return self._broker is not None and self._broker.is_connected

    async def __aenter__(self) -> AgentLink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect (raising :class:`protocol.errors.ConnectError` if the broker cannot be reached in the
        config's dial timeout) and run in the background."""
        if self._broker is not None:
            raise RuntimeError(f"agent link {self.consumer} is already started")
        broker = mqtt.Broker(
            self.config, client_id=self.client_id, subscriptions=self._subscriptions, **self._broker_options
        )
        await broker.start()
        self._broker = broker
        self._runner = asyncio.create_task(self._run(broker), name=f"agent-link:{self.consumer}")

    async def stop(self, *, drain_timeout: float = 5.0) -> None:
        """Stop receiving, finish nothing more, and disconnect after waiting up to ``drain_timeout`` seconds for
        publishes already handed to the broker to be acknowledged."""
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

    async def wait(self) -> None:
        """Until the link stops (it runs until cancelled)."""
        if self._runner is not None:
            await self._runner

    # --- sending
    # -------------------------------------------------------------------------------------------------

    async def send_spec_resync(self, held: Iterable[tuple[str, int]] | None = None) -> None:
        """Tell the sources what we hold; they answer with what changed and deletes for what they dropped."""
        pairs = list(self.handler.held() if held is None else held)
        topic = self._agent_topic(self.resync_source, broadcast=True)
        for data in resync.spec_resync_payloads(pairs):
            event = events.make_event(
                type=types.manifestbundle_type("spec", types.RESYNC_REQUEST),
                source=self.agent_id,
                data=dict(data),
                extensions={types.EXT_CLUSTER_NAME: self.consumer, types.EXT_ORIGINAL_SOURCE: ALL_SOURCES},
            )
            await self._publish(topic, event)
            self.counters.spec_resyncs_sent += 1

    async def publish_status(
        self,
        *,
        resource_id: str,
        version: int,
        source: str,
        status: payloads.ManifestBundleStatus,
        metadata: str | None = None,
        action: str = types.UPDATE_REQUEST,
        status_hash: str | None = None,
    ) -> str:
        """Publish one work's status; returns its status hash."""
        digest = status_hash or statushash.status_hash(status)
        event = events.make_event(
            type=types.manifestbundle_type("status", action),
            source=self.agent_id,
            data=dict(status),
            extensions={
                types.EXT_RESOURCE_ID: resource_id,
                types.EXT_RESOURCE_VERSION: version,
                types.EXT_CLUSTER_NAME: self.consumer,
                types.EXT_ORIGINAL_SOURCE: source,
                types.EXT_SEQUENCE_ID: self._sequence.next(),
                types.EXT_STATUS_HASH: digest,
                types.EXT_METADATA: metadata or default_metadata(resource_id),
            },
        )
        await self._publish(self._agent_topic(source), event)
        self.counters.status_sent += 1
        return digest

    def _agent_topic(self, source: str, *, broadcast: bool = False) -> str:
        if broadcast and self.config.topics.agent_broadcast:
            return topics.fill(self.config.topics.agent_broadcast, source=source, consumer=self.consumer)
        return topics.fill(self.config.topics.agent_events, source=source or self.resync_source, consumer=self.consumer)

    async def _publish(self, topic: str, event: CloudEvent) -> None:
        if self.on_sent is not None:
            self.on_sent(event)
        await self.broker.publish(topic, cloudevents_mqtt.encode(event, binary=self.broker.binary_mode))

    # --- receiving
    # -----------------------------------------------------------------------------------------------

    async def _run(self, broker: mqtt.Broker) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._resync_on_connect(broker), name=f"agent-link-resync:{self.consumer}")
            group.create_task(self._receive(broker), name=f"agent-link-receive:{self.consumer}")

    async def _resync_on_connect(self, broker: mqtt.Broker) -> None:
        async for _ in broker.connections():
            await self._guard(self.send_spec_resync(), what="spec resync")

    async def _receive(self, broker: mqtt.Broker) -> None:
        async for item in broker.messages():
            self.counters.received += 1
            try:
                event = cloudevents_mqtt.decode(item.message)
                kind = types.event_type(event)
            except ProtocolError as exc:
                self.counters.malformed += 1
                logger.warning("agent %s: dropped a malformed message on %s: %s", self.consumer, item.topic, exc)
                self._notify()
                continue
            if self.on_event is not None:
                self.on_event(event)
            if kind.subresource == types.SPEC:
                await self._spawn(event)
            elif kind.action == types.RESYNC_REQUEST:
                await self._guard(self._status_resync(event), what="status resync")
            self._notify()

    async def _spawn(self, event: CloudEvent) -> None:
        try:
            spec = self._decode_spec(event)
        except ProtocolError as exc:
            self.counters.malformed += 1
            logger.warning("agent %s: dropped spec event %s: %s", self.consumer, event.get_id(), exc)
            return
        if spec is None:
            return
        await self._slots.acquire()
        rid = spec.resource_id
        lock = self._locks.setdefault(rid, asyncio.Lock())
        self._queued[rid] = self._queued.get(rid, 0) + 1
        task = asyncio.create_task(self._handle(lock, spec), name=f"agent-spec:{rid}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._handled(rid, done))

    async def _handle(self, lock: asyncio.Lock, spec: SpecEvent) -> None:
        async with lock:
            await self._guard(self.handler.on_spec(spec), what=f"spec event for {spec.resource_id}")

    def _handled(self, rid: str, task: asyncio.Task[None]) -> None:
        # NB: a done callback, not a `finally`: a task cancelled before its first step never runs its body, and
        # its slot must come back all the same. The lock goes only with the resource's last queued task:
        # `lock.locked()` is already false while a woken waiter has yet to take it, and a new lock then would
        # let the next event overtake that waiter.
        self._tasks.discard(task)
        self._slots.release()
        left = self._queued.pop(rid) - 1
        if left:
            self._queued[rid] = left
        else:
            del self._locks[rid]
        self._notify()

    def _decode_spec(self, event: CloudEvent) -> SpecEvent | None:
        cluster = types.str_extension(event, types.EXT_CLUSTER_NAME, default="")
        if cluster != self.consumer:
            self.counters.other_cluster += 1
            return None
        if self.hub_source is not None and event.get_source() != self.hub_source:
            self.counters.foreign_source += 1
            logger.warning(
                "agent %s: refused spec event %s from source %r (expected %r)",
                self.consumer,
                event.get_id(),
                event.get_source(),
                self.hub_source,
            )
            return None
        kind = types.event_type(event)
        deleting = (
            kind.action == types.DELETE_REQUEST
            or types.timestamp_extension(event, types.EXT_DELETION_TIMESTAMP) is not None
        )
        return SpecEvent(
            resource_id=types.str_extension(event, types.EXT_RESOURCE_ID),
            version=types.int_extension(event, types.EXT_RESOURCE_VERSION, default=0),
            source=event.get_source(),
            action=kind.action,
            deleting=deleting,
            bundle={} if deleting else events.data_object(event),
            metadata=event_metadata(event),
            event=event,
        )

    async def _status_resync(self, event: CloudEvent) -> None:
        listed = {h["resourceID"]: h["statusHash"] for h in payloads.read_status_resync(event.get_data())}
        self.counters.status_resyncs_received += 1
        await self.handler.on_status_resync(event.get_source(), listed)

    async def _guard(self, work: Awaitable[Any], *, what: str) -> None:
        """Count and log what fails, and go on: one bad event or one publish that timed out while the broker was
        away must not stop the agent (the next resync repairs what was lost)."""
        try:
            await work
        except BrokerError as exc:
            self.counters.publish_failed += 1
            logger.warning("agent %s: %s: publish failed: %s", self.consumer, what, exc)
        except MaestroProtocolException as exc:
            self.counters.malformed += 1
            logger.warning("agent %s: %s: %s", self.consumer, what, exc)
        except Exception:
            self.counters.handler_failed += 1
            logger.exception("agent %s: %s failed", self.consumer, what)

    def _notify(self) -> None:
        self.changed.set()


def event_metadata(event: CloudEvent) -> str:
    """The work metadata to echo: the spec event's, else a minimal one named by the resource id."""
    value = event.get_extension(types.EXT_METADATA)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return default_metadata(str(event.get_extension(types.EXT_RESOURCE_ID)))


def default_metadata(resource_id: str) -> str:
    return json.dumps({"name": resource_id}, separators=(",", ":"))
