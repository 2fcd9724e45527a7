"""The hub's transport, composed: broker config, the MQTT connection, dispatcher, status ingest, status resync.

``maestro server`` runs :meth:`Transport.run` as one supervised task. It connects (retrying with backoff while the
broker is down: REST keeps serving and spec events wait in the outbox), then runs the dispatcher, the status
ingest and the status resync as named tasks of one task group until cancelled. After the first link the MQTT
adapter reconnects on its own and failed publishes back off per resource, so a broker outage costs latency only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import databases

from protocol import mqtt, topics
from protocol.errors import BrokerError
from protocol.mqtt_config import MQTTConfig
from server.dispatch import ingest, instances, maintenance, publisher, resync
from server.settings import Settings

log = logging.getLogger(__name__)

SHARE_GROUP = "statussubscribers"


def status_subscription(config: MQTTConfig, settings: Settings) -> str:
    """The agent-events filter, shared (``$share/statussubscribers/…``) when asked for and the broker can."""
    configured = config.topics.agent_events
    if configured.startswith(topics.SHARE_PREFIX):
        return configured
    if settings.transport.subscription_type == "shared" and config.protocol_version == 5:
        return topics.shared(configured, SHARE_GROUP)
    return configured


class Transport:
    def __init__(
        self,
        settings: Settings,
        database: databases.Database,
        config: MQTTConfig,
        *,
        dsn: str | None,
        registry: instances.Registry | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.config = config
        self.dsn = dsn
        self.registry = registry
        self.broker: mqtt.Broker | None = None
        self.dispatcher: publisher.Dispatcher | None = None
        if registry is not None:
            registry.eligible = lambda: self.connected  # NB: no broker, no consumers (replicas take them over).

    @property
    def connected(self) -> bool:
        return self.broker is not None and self.broker.is_connected

    @property
    def broadcast(self) -> bool:
        """Every replica receives every agent event (no shared subscription): only owners may handle them."""
        return not status_subscription(self.config, self.settings).startswith(topics.SHARE_PREFIX)

    async def connect(self) -> mqtt.Broker:
        """A started broker; retries (with capped, jittered backoff) until one connects."""
        subscription = status_subscription(self.config, self.settings)
        config = self.config
        if not self.broadcast:
            # NB: a persistent session stays a member of the shared group while its replica is dead, and the
            # broker keeps queueing that member's share of every consumer's status events for it: a clean
            # session leaves the group when the link drops. What is missed meanwhile, status resync recovers.
            config = dataclasses.replace(config, session_expiry=0)
        attempt = 0
        while True:
            broker = mqtt.Broker(
                config,
                client_id=self.settings.transport.client_id,
                subscriptions=[subscription],
                reconnect=self.settings.transport.mqtt_reconnect,
            )
            try:
                await broker.start()
            except BrokerError as exc:
                attempt += 1
                delay = self.settings.transport.mqtt_reconnect.delay(attempt)
                log.warning(
                    "MQTT broker %s:%d unavailable (%s); retrying in %.1fs (attempt %d)",
                    self.config.host,
                    self.config.port,
                    exc,
                    delay,
                    attempt,
                )
                await asyncio.sleep(delay)
                continue
            log.info("hub transport connected to %s:%d, status subscription %s", *self._where(), subscription)
            return broker

    def _where(self) -> tuple[str, int]:
        return self.config.host, self.config.port

    async def run(self) -> None:
        """Connect, then run the transport tasks until cancelled."""
        broker = self.broker = await self.connect()
        if self.registry is not None:
            self.registry.poke()
        source_events = self.config.topics.source_events
        owns = self.registry.owns if self.registry is not None else None
        self.dispatcher = publisher.Dispatcher(
            self.database, broker, self.settings, dsn=self.dsn, source_events=source_events, owns=owns
        )
        status = ingest.Ingest(
            self.database, broker, self.settings, source_events=source_events, owns=owns if self.broadcast else None
        )
        repairs = maintenance.Maintenance(self.database, self.settings.maintenance, owns=owns)
        resyncs = resync.Resyncs(
            self.database,
            broker,
            self.settings,
            source_events=source_events,
            owns=owns,
            fresh=self.registry.fresh if self.registry is not None else None,
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.dispatcher.run(), name="transport:dispatcher")
                group.create_task(status.run(broker.messages()), name="transport:status-ingest")
                group.create_task(repairs.run(), name="transport:maintenance")
                group.create_task(resyncs.serve(broker.connections()), name="transport:status-resync")
                if self.registry is not None:
                    group.create_task(self._takeovers(resyncs), name="transport:takeover")
        finally:
            self.broker = None
            await broker.close()

    async def _takeovers(self, resyncs: resync.Resyncs) -> None:
        """When the replica set changes: publish what the new owner now must (its consumers' pending events) and
        ask the agents of consumers taken over for their status, which their old owner may not have stored."""
        assert self.registry is not None
        while True:
            await self.registry.changed.wait()
            self.registry.changed.clear()
            if self.dispatcher is not None:
                self.dispatcher.wake.set()
            gained = sorted(self.registry.take_gained())
            if gained:
                log.info("took over %d consumers: %s", len(gained), ", ".join(gained[:20]))
            if self.registry.take_departed() and not self.broadcast:
                # NB: with a shared subscription the departed replica got its share of every consumer's status
                # events; those it had not stored are lost whoever owns the consumer, so ask the agents of all
                # the consumers this replica owns.
                resyncs.everyone()
            elif gained:
                resyncs.taken_over(gained)


async def supervise(transport: Transport, *, delay: float = 5.0) -> None:
    """Run the transport; if it ever crashes (a bug), log it and start it again after ``delay``."""
    while True:
        try:
            await transport.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("hub transport crashed; restarting in %.0fs", delay)
        await asyncio.sleep(delay)
