"""Status ingest: agent CloudEvents from MQTT, decoded and routed — statuses to :mod:`server.services.status`, spec
resync requests to :mod:`server.services.spec_resync` (whose answer is published here).

Every message is judged on its own and anything unacceptable is dropped with one log line and a count by
reason (:data:`server.dispatch.metrics.STATUS_DROPPED`); nothing an agent sends can stop the loop. What makes a
status acceptable, and what an accepted status or a ``Deleted=True`` writes, is :func:`server.services.status.accept`.

A status the hub cannot store because the database is unavailable is not dropped: it is held (the newest per
resource, at most ``hold_limit`` in all) and stored again with capped, jittered backoff once the database answers;
the checks (sequence id, version) then decide as if it had just arrived. A consumer whose held status had
to be let go (more resources waiting than the limit) is sent a ``status.resync_request`` once the held statuses
are stored, as after a broker reconnect (:mod:`server.dispatch.resync`).

A ``spec.resync_request`` (an agent that (re)connected, listing what it has) is answered on the consumer's
``sourceevents`` topic with what :func:`server.services.spec_resync.owed` says the agent is owed; one that
arrives while the database is unavailable is answered once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import databases
from cloudevents.core.v1.event import CloudEvent

from protocol import cloudevents_mqtt, payloads, sequence, statushash, topics, types
from protocol.errors import ProtocolError
from protocol.mqtt import Received
from server.dispatch import guard, metrics, resync, wire
from server.errors import DatabaseUnavailable
from server.services import spec_resync
from server.services.status import Rejected, StatusReport, accept
from server.settings import Settings

log = logging.getLogger(__name__)

STATUS_ACTIONS = frozenset({types.UPDATE_REQUEST, types.RESYNC_RESPONSE})
_RESOURCE_ID_PROPERTIES = frozenset({cloudevents_mqtt.CE_PREFIX + types.EXT_RESOURCE_ID, types.EXT_RESOURCE_ID})


class Ingest:
    """Handles agent events; :meth:`run` consumes a broker's messages until it closes."""

    def __init__(
        self,
        database: databases.Database,
        publisher: wire.Publisher,
        settings: Settings,
        *,
        source_events: str,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.database = database
        knobs = settings.dispatch
        self.held: dict[str, StatusReport] = {}
        """Statuses not stored because the database was unavailable, by resource id (the newest wins)."""
        self.hold_limit = max(1, knobs.ingest_hold_limit)
        self.retry = knobs.ingest_retry
        self._let_go: set[str] = set()
        """Consumers of held statuses dropped for the limit: asked for a status resync once the database is back."""
        self.held_resyncs: dict[str, CloudEvent] = {}
        """Agents' spec resync requests that arrived while the database was unavailable, by consumer (the newest)."""
        self._holding = asyncio.Event()
        self.concurrency = max(1, knobs.ingest_concurrency)
        """Messages handled at once: each status is a transaction of a few round trips, one at a time caps
        ingest at a few hundred per second. Messages of one resource stay in order (one worker per resource)."""
        self.owns = owns
        """With broadcast subscriptions every replica receives everything: only the consumer's owner handles it."""
        self.publisher = publisher
        self.source_id = settings.transport.source_id
        self.source_events = source_events
        self.max_message_size = settings.transport.mqtt_max_packet_bytes
        self.publish_timeout = knobs.publish_timeout

    async def run(self, messages: Any) -> None:
        """Handle every item of the async iterator ``messages`` (e.g. ``Broker.messages()``), ``concurrency`` at
        a time; those of one resource (of one topic when the resource id is not a message property) in order."""
        queues: list[asyncio.Queue[Received | None]] = [asyncio.Queue(maxsize=16) for _ in range(self.concurrency)]

        async def worker(queue: asyncio.Queue[Received | None]) -> None:
            while (received := await queue.get()) is not None:
                await self.handle(received)

        async with asyncio.TaskGroup() as group:
            for n, queue in enumerate(queues):
                group.create_task(worker(queue), name=f"ingest:worker-{n}")
            retries = group.create_task(self.retry_held(), name="ingest:retry-held")
            async for received in messages:
                # NB: a full queue blocks this loop, so the broker's inbox (and its PUBACK window) still bounds
                # what the hub holds.
                await queues[hash(_shard_key(received)) % len(queues)].put(received)
            for queue in queues:
                await queue.put(None)
            retries.cancel()

    async def handle(self, received: Received) -> str:
        """Handle one message; returns ``"accepted"``, ``"resynced"``, ``"held"`` (the database is unavailable: stored
        or answered once it is back) or the drop reason. Never raises."""
        try:
            return await self._handle(received)
        except Rejected as rejected:
            metrics.STATUS_DROPPED.labels(rejected.reason).inc()
            log.debug("dropped agent event on %s: %s (%s)", received.topic, rejected, rejected.reason)
            return rejected.reason
        except DatabaseUnavailable:
            metrics.STATUS_DROPPED.labels("database_unavailable").inc()
            log.debug("agent event on %s not handled: the database is unavailable", received.topic)
            return "database_unavailable"
        except Exception:
            metrics.STATUS_DROPPED.labels("error").inc()
            log.exception("failed to handle agent event on %s", received.topic)
            return "error"

    async def _handle(self, received: Received) -> str:
        size = cloudevents_mqtt.encoded_size(received.message)
        if size > self.max_message_size:
            raise Rejected("oversize", f"{size} bytes, over the limit of {self.max_message_size}")
        try:
            parts = topics.parse(received.topic)
        except ProtocolError as exc:
            raise Rejected("bad_topic", str(exc)) from None
        if parts.kind != topics.AGENT_EVENTS or parts.source != self.source_id:
            raise Rejected("bad_topic", f"not an agent-events topic of source {self.source_id!r}")
        if self.owns is not None and not self.owns(parts.consumer):
            metrics.NOT_OWNER.inc()
            return "not_owner"
        try:
            event = cloudevents_mqtt.decode(received.message)
            kind = types.event_type(event)
        except ProtocolError as exc:
            raise Rejected("malformed", str(exc)) from None
        if kind.data_type != types.MANIFESTBUNDLE_DATA_TYPE:
            raise Rejected("unsupported_type", f"data type {kind.data_type!r}")
        if kind.subresource == types.SPEC and kind.action == types.RESYNC_REQUEST:
            try:
                await self.spec_resync(parts.consumer, event)
            except DatabaseUnavailable:
                self.held_resyncs[parts.consumer] = event  # NB: the agent asks once per connect: answer it later.
                self._holding.set()
                return "held"
            return "resynced"
        if kind.subresource == types.STATUS and kind.action in STATUS_ACTIONS:
            report = self.decode_status(parts.consumer, event)
            try:
                await guard.finish(self.store_status(report))
            except DatabaseUnavailable:
                self.hold(report)
                return "held"
            return "accepted"
        raise Rejected("unsupported_type", f"unexpected event type {event.get_type()!r}")

    # --- status ----------------------------------------------------------------------------------------------

    def decode_status(self, consumer: str, event: CloudEvent) -> StatusReport:
        try:
            cluster = types.str_extension(event, types.EXT_CLUSTER_NAME)
            original = types.str_extension(event, types.EXT_ORIGINAL_SOURCE)
            resource_id = types.str_extension(event, types.EXT_RESOURCE_ID)
            version = types.int_extension(event, types.EXT_RESOURCE_VERSION)
            sequence_id = str(sequence.parse(types.str_extension(event, types.EXT_SEQUENCE_ID)))
            given_hash = types.str_extension(event, types.EXT_STATUS_HASH, default="")
            data = _data(event)
        except ProtocolError as exc:
            raise Rejected("malformed", str(exc)) from None
        conditions = data.get("conditions") or []
        resource_status = data.get("resourceStatus") or []
        if not _list_of_objects(conditions) or not _list_of_objects(resource_status):
            raise Rejected("malformed", "conditions and resourceStatus must be lists of objects")
        status_hash = given_hash or statushash.status_hash(
            {"conditions": conditions, "resourceStatus": resource_status}
        )
        return StatusReport(
            consumer=consumer,
            resource_id=resource_id,
            version=version,
            sequence_id=sequence_id,
            status_hash=status_hash,
            conditions=conditions,
            resource_status=resource_status,
            cluster_name=cluster,
            original_source=original,
        )

    async def store_status(self, report: StatusReport) -> None:
        """Store ``report`` (:func:`server.services.status.accept`) and count what it did."""
        outcome = await accept(self.database, report, source_id=self.source_id)
        metrics.STATUS_ACCEPTED.labels(outcome).inc()

    # --- statuses held through a database outage ----------------------------------------------------------------

    def hold(self, report: StatusReport) -> None:
        """Keep ``report`` for :meth:`retry_held`; over the limit, the oldest held one is let go (its consumer is
        asked for a status resync later)."""
        self.held.pop(report.resource_id, None)  # NB: re-inserted last: the dict's order is the order of arrival.
        if len(self.held) >= self.hold_limit:
            oldest = next(iter(self.held))
            self._let_go.add(self.held.pop(oldest).consumer)
            metrics.STATUS_DROPPED.labels("held_over_limit").inc()
        self.held[report.resource_id] = report
        metrics.STATUS_HELD.set(len(self.held))
        log.debug("status of resource %s held: the database is unavailable", report.resource_id)
        self._holding.set()

    async def retry_held(self) -> None:
        """Until cancelled: store the held statuses, with capped, jittered backoff while the database is away;
        then ask the consumers whose statuses were let go for a status resync."""
        attempt = 0
        while True:
            await self._holding.wait()
            attempt += 1
            delay = self.retry.delay(attempt)
            await asyncio.sleep(delay)
            if await self._store_held():
                attempt = 0
                self._holding.clear()

    async def _store_held(self) -> bool:
        """One pass over the held statuses; false if the database is still unavailable."""
        for rid in list(self.held):
            report = self.held.get(rid)
            if report is None:
                continue
            try:
                await guard.finish(self.store_status(report))
                outcome = "accepted"
            except DatabaseUnavailable:
                return False
            except Rejected as rejected:
                metrics.STATUS_DROPPED.labels(rejected.reason).inc()
                outcome = rejected.reason
            except Exception:
                metrics.STATUS_DROPPED.labels("error").inc()
                log.exception("failed to store the held status of resource %s", rid)
                outcome = "error"
            if self.held.get(rid) is report:  # NB: a newer one arriving meanwhile stays held.
                del self.held[rid]
            metrics.STATUS_HELD.set(len(self.held))
            log.debug("held status of resource %s on consumer %s: %s", rid, report.consumer, outcome)
        for consumer in list(self.held_resyncs):
            try:
                await self.spec_resync(consumer, self.held_resyncs[consumer])
            except DatabaseUnavailable:
                return False
            except Exception as exc:  # NB: the agent asks again on its next connect.
                log.warning("held spec resync of consumer %s failed: %r", consumer, exc)
            self.held_resyncs.pop(consumer, None)
        if self._let_go:
            consumers, self._let_go = sorted(self._let_go), set()
            try:
                await resync.status_resync(
                    self.database,
                    self.publisher,
                    source_id=self.source_id,
                    source_events=self.source_events,
                    consumers=consumers,
                    publish_timeout=self.publish_timeout,
                )
            except DatabaseUnavailable:
                self._let_go.update(consumers)
                return False
            except Exception as exc:  # NB: the next broker link resyncs every consumer anyway.
                log.warning("status resync of consumers with statuses let go failed: %r", exc)
        return not self.held and not self.held_resyncs

    # --- spec resync -----------------------------------------------------------------------------------------

    async def spec_resync(self, consumer: str, event: CloudEvent) -> int:
        """Answer an agent's ``spec.resync_request``; returns how many events were sent."""
        try:
            cluster = types.str_extension(event, types.EXT_CLUSTER_NAME)
            original = types.str_extension(event, types.EXT_ORIGINAL_SOURCE, default="")
            has = {e["resourceID"]: e["resourceVersion"] for e in payloads.read_spec_resync(event.get_data())}
        except ProtocolError as exc:
            raise Rejected("malformed", str(exc)) from None
        request = spec_resync.Request(consumer, cluster, original, has)
        owed = await guard.finish(spec_resync.owed(self.database, request, source_id=self.source_id))
        answers = [wire.spec_event(row, source=self.source_id, resync=True) for row in owed.rows] + [
            wire.delete_marker(rid, consumer=consumer, source=self.source_id, version=version)
            for rid, version in owed.unknown.items()
        ]
        topic = wire.source_events_topic(self.source_events, source=self.source_id, consumer=consumer)
        futures = [
            await self.publisher.publish(topic, wire.encode(e, self.publisher), timeout=self.publish_timeout)
            for e in answers
        ]
        del futures  # NB: not awaited: the agent re-requests a resync on its next reconnect if one is lost.
        metrics.RESYNC_SENT.labels("spec").inc(len(answers))
        log.info(
            "spec resync for consumer %s: agent has %d, hub has %d, sent %d",
            consumer,
            len(has),
            owed.known,
            len(answers),
        )
        return len(answers)


def _shard_key(received: Received) -> str:
    """The resource id from the binary-mode properties, else the topic (one consumer, in order)."""
    for item in received.message.user_properties:
        if len(item) == 2 and str(item[0]).lower() in _RESOURCE_ID_PROPERTIES:
            return str(item[1])
    return received.topic


def _data(event: CloudEvent) -> dict[str, Any]:
    data = event.get_data()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProtocolError("status data must be a JSON object")
    return data


def _list_of_objects(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)
