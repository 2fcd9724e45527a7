"""The agent's wire (:class:`agent.link.AgentLink`) against a real mosquitto, with the test as the source.

Every test runs twice: MQTT 5 (binary content mode) and MQTT 3.1.1 (structured mode).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from agent import link as agent_link
from protocol import cloudevents_mqtt, events, mqtt, mqtt_config, payloads, sequence, statushash, topics, types
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames

STATUS = payloads.ManifestBundleStatus(
    conditions=[
        payloads.Condition(
            type="Applied",
            status="True",
            reason="AppliedManifestWorkComplete",
            message="",
            lastTransitionTime="2026-01-01T00:00:00Z",
            observedGeneration=1,
        )
    ],
    resourceStatus=[],
)


class Source:
    """The hub's side of the wire, hand-driven by the test (in the link's MQTT version)."""

    def __init__(self, broker: mqtt.Broker, names: MQTTNames) -> None:
        self.broker = broker
        self.names = names
        self.inbox: asyncio.Queue[tuple[str, CloudEvent]] = asyncio.Queue()

    async def pump(self) -> None:
        async for item in self.broker.messages():
            await self.inbox.put((item.topic, cloudevents_mqtt.decode(item.message)))

    async def expect(self, subresource: str, action: str, *, timeout: float = 10) -> tuple[str, CloudEvent]:
        async with asyncio.timeout(timeout):
            while True:
                topic, event = await self.inbox.get()
                parsed = types.event_type(event)
                if (parsed.subresource, parsed.action) == (subresource, action):
                    return topic, event

    def spec(
        self,
        *,
        resource_id: str | None = "r1",
        version: int = 1,
        action: str = types.CREATE_REQUEST,
        cluster: str | None = None,
        source: str | None = None,
    ) -> CloudEvent:
        return events.make_event(
            type=types.manifestbundle_type("spec", action),
            source=source or self.names.source,
            data={"manifests": []},
            extensions={
                types.EXT_RESOURCE_ID: resource_id,
                types.EXT_RESOURCE_VERSION: version,
                types.EXT_CLUSTER_NAME: cluster or self.names.consumer,
            },
        )

    def status_resync(self, hashes: list[dict[str, str]] | str) -> CloudEvent:
        return events.make_event(
            type=types.manifestbundle_type("status", types.RESYNC_REQUEST),
            source=self.names.source,
            data={"statusHashes": hashes},
            extensions={types.EXT_CLUSTER_NAME: self.names.consumer},
        )

    async def send(self, *sent: CloudEvent | cloudevents_mqtt.MQTTMessage, topic: str | None = None) -> None:
        """Publish in order and wait for every PUBACK."""
        topic = topic or topics.source_events(self.names.source, self.names.consumer)
        acks = []
        async with asyncio.timeout(10):
            for item in sent:
                message = item if isinstance(item, cloudevents_mqtt.MQTTMessage) else self.encode(item)
                acks.append(await self.broker.publish(topic, message))
            await asyncio.gather(*acks)

    def encode(self, event: CloudEvent) -> cloudevents_mqtt.MQTTMessage:
        return cloudevents_mqtt.encode(event, binary=self.broker.binary_mode)


class Recorder:
    """A link handler that records what reaches it; a spec event whose key is in ``gates`` waits for it.

    Pass :meth:`arrived` as the link's ``on_event`` to record arrivals too; :meth:`until` waits on all of it.
    """

    def __init__(self, held: list[tuple[str, int]] | None = None, *, work: float = 0.0) -> None:
        self.pairs = held or []
        self.work = work
        self.specs: list[agent_link.SpecEvent] = []
        self.resyncs: list[tuple[str, dict[str, str]]] = []
        self.gates: dict[tuple[str, int], asyncio.Event] = {}
        self.log: list[tuple[str, str, int]] = []
        """``("start"|"end", resource id, version)`` in the order handlers ran."""
        self.overlaps: list[str] = []
        self.arrivals: list[CloudEvent] = []
        self._running: set[str] = set()
        self._changed = asyncio.Event()

    def arrived(self, event: CloudEvent) -> None:
        self.arrivals.append(event)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def held(self) -> list[tuple[str, int]]:
        return self.pairs

    async def on_spec(self, spec: agent_link.SpecEvent) -> None:
        if spec.resource_id in self._running:
            self.overlaps.append(f"{spec.resource_id} v{spec.version}")
        self._running.add(spec.resource_id)
        self.log.append(("start", spec.resource_id, spec.version))
        try:
            if spec.resource_id == "boom":
                raise RuntimeError("handler bug")
            gate = self.gates.get((spec.resource_id, spec.version))
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(self.work)
            self.specs.append(spec)
        finally:
            self._running.discard(spec.resource_id)
            self.log.append(("end", spec.resource_id, spec.version))
            self._changed.set()

    async def on_status_resync(self, source: str, hashes: dict[str, str]) -> None:
        self.resyncs.append((source, hashes))
        self._changed.set()

    def handled(self, resource_id: str) -> list[int]:
        return [s.version for s in self.specs if s.resource_id == resource_id]


@pytest.fixture(params=[5, 3], ids=["mqtt5-binary", "mqtt3-structured"])
def protocol_version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def agent_config(mosquitto: MosquittoServer, mqtt_names: MQTTNames, protocol_version: int) -> mqtt_config.MQTTConfig:
    return mosquitto.config(source=mqtt_names.source, consumer=mqtt_names.consumer, protocol_version=protocol_version)


@pytest.fixture
async def source(mosquitto: MosquittoServer, mqtt_names: MQTTNames, protocol_version: int) -> AsyncIterator[Source]:
    config = mosquitto.config(source=mqtt_names.source, protocol_version=protocol_version)
    subscriptions = [
        topics.server_subscription(mqtt_names.source),
        topics.agent_broadcast(mqtt_names.source, topics.WILDCARD),
    ]
    async with mqtt.Broker(config, client_id=mqtt_names.client_id("hub"), subscriptions=subscriptions) as broker:
        hub = Source(broker, mqtt_names)
        pump = asyncio.create_task(hub.pump())
        yield hub
        pump.cancel()


def make_link(
    config: mqtt_config.MQTTConfig, names: MQTTNames, handler: Recorder, **options: Any
) -> agent_link.AgentLink:
    return agent_link.AgentLink(
        consumer=names.consumer,
        config=config,
        handler=handler,
        client_id=names.client_id("agent"),
        resync_source=names.source,
        on_event=handler.arrived,
        **options,
    )


async def test_spec_resync_on_connect_lists_what_is_held(
    agent_config: mqtt_config.MQTTConfig, mqtt_names: MQTTNames, source: Source
) -> None:
    handler = Recorder(held=[("a", 3), ("b", 1)])
    async with make_link(agent_config, mqtt_names, handler) as link:
        topic, hello = await source.expect("spec", types.RESYNC_REQUEST)
        assert topic == topics.agent_events(mqtt_names.source, mqtt_names.consumer)
        assert hello.get_data() == {
            "resourceVersions": [{"resourceID": "a", "resourceVersion": 3}, {"resourceID": "b", "resourceVersion": 1}]
        }
        assert hello.get_extension(types.EXT_ORIGINAL_SOURCE) == ""
        assert hello.get_extension(types.EXT_CLUSTER_NAME) == mqtt_names.consumer
        assert hello.get_source() == f"{mqtt_names.consumer}-work-agent"
        assert link.counters.spec_resyncs_sent == 1

        handler.pairs = []
        await link.send_spec_resync()
        _, again = await source.expect("spec", types.RESYNC_REQUEST)
        assert again.get_data() == {"resourceVersions": []}


async def test_spec_resync_and_status_resync_on_broadcast_topics(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, protocol_version: int, source: Source
) -> None:
    base = f"sources/{mqtt_names.source}/consumers"
    config = mosquitto.config(
        protocol_version=protocol_version,
        topics=mqtt_config.TopicsConfig(
            source_events=f"{base}/{mqtt_names.consumer}/sourceevents",
            agent_events=f"{base}/{mqtt_names.consumer}/agentevents",
            source_broadcast=f"{base}/+/sourcebroadcast",
            agent_broadcast=f"{base}/+/agentbroadcast",
        ),
    )
    handler = Recorder()
    async with make_link(config, mqtt_names, handler):
        topic, _ = await source.expect("spec", types.RESYNC_REQUEST)
        assert topic == topics.agent_broadcast(mqtt_names.source, mqtt_names.consumer)
        await source.send(source.status_resync([]), topic=topics.source_broadcast(mqtt_names.source, "all"))
        await handler.until(lambda: len(handler.resyncs) == 1)
        assert handler.resyncs == [(mqtt_names.source, {})]


async def test_other_cluster_and_foreign_source_are_dropped_and_counted(
    agent_config: mqtt_config.MQTTConfig, mqtt_names: MQTTNames, source: Source
) -> None:
    handler = Recorder()
    async with make_link(agent_config, mqtt_names, handler, hub_source=mqtt_names.source) as link:
        await source.expect("spec", types.RESYNC_REQUEST)
        await source.send(
            source.spec(resource_id="elsewhere", cluster="someone-else"),
            source.spec(resource_id="intruder", source="intruder"),
            source.spec(resource_id="mine"),  # NB: the barrier: handled after the two before it were read.
        )
        await handler.until(lambda: handler.handled("mine") == [1])
        assert [s.resource_id for s in handler.specs] == ["mine"]
        assert (link.counters.other_cluster, link.counters.foreign_source) == (1, 1)
        assert [e.get_extension(types.EXT_RESOURCE_ID) for e in handler.arrivals] == ["elsewhere", "intruder", "mine"]
        [spec] = handler.specs
        assert (spec.version, spec.source, spec.action, spec.deleting) == (
            1,
            mqtt_names.source,
            types.CREATE_REQUEST,
            False,
        )
        assert spec.bundle == {"manifests": []}
        assert spec.metadata == '{"name":"mine"}'


async def test_malformed_messages_and_failing_handlers_are_counted_and_the_link_goes_on(
    agent_config: mqtt_config.MQTTConfig, mqtt_names: MQTTNames, source: Source
) -> None:
    handler = Recorder()
    async with make_link(agent_config, mqtt_names, handler) as link:
        await source.expect("spec", types.RESYNC_REQUEST)
        await source.send(
            cloudevents_mqtt.MQTTMessage(payload=b"garbage", content_type="application/json"),
            source.spec(resource_id=None),  # no resourceid
            source.status_resync("not a list"),
            source.spec(resource_id="boom"),
            source.spec(resource_id="r1", action=types.DELETE_REQUEST),
        )
        await handler.until(lambda: handler.handled("r1") == [1])
        assert link.counters.malformed == 3
        assert link.counters.handler_failed == 1
        assert link.counters.received == 5
        assert handler.resyncs == []
        assert handler.specs[-1].deleting
        assert handler.specs[-1].bundle == {}


async def test_one_resource_in_order_while_another_runs(
    agent_config: mqtt_config.MQTTConfig, mqtt_names: MQTTNames, source: Source
) -> None:
    # NB: three slots: r1 v1 (held at its gate), r1 v2 and r1 v3 (queued on r1's lock), and the receive loop
    # waiting for a slot for r1 v4. When r1 v1 ends, v4 must still queue behind v2 and v3.
    handler = Recorder(work=0.02)
    handler.gates[("r1", 1)] = gate = asyncio.Event()
    async with make_link(agent_config, mqtt_names, handler, concurrency=3):
        await source.expect("spec", types.RESYNC_REQUEST)
        await source.send(
            source.spec(resource_id="r1", version=1),
            source.spec(resource_id="r2", version=1),
            *(source.spec(resource_id="r1", version=v, action=types.UPDATE_REQUEST) for v in (2, 3, 4)),
        )
        await handler.until(lambda: handler.handled("r2") == [1] and len(handler.arrivals) == 5)
        assert [entry for entry in handler.log if entry[1] == "r1"] == [("start", "r1", 1)]
        gate.set()
        await handler.until(lambda: len(handler.handled("r1")) == 4)
        assert handler.handled("r1") == [1, 2, 3, 4]
        assert [(what, v) for what, rid, v in handler.log if rid == "r1"] == [
            (what, v) for v in (1, 2, 3, 4) for what in ("start", "end")
        ]
        assert handler.overlaps == []


async def test_publish_status(agent_config: mqtt_config.MQTTConfig, mqtt_names: MQTTNames, source: Source) -> None:
    sent: list[CloudEvent] = []
    async with make_link(agent_config, mqtt_names, Recorder(), on_sent=sent.append) as link:
        await source.expect("spec", types.RESYNC_REQUEST)
        digest = await link.publish_status(resource_id="r1", version=2, source=mqtt_names.source, status=STATUS)
        await link.publish_status(
            resource_id="r1",
            version=2,
            source=mqtt_names.source,
            status=STATUS,
            metadata='{"name":"work-1"}',
            action=types.RESYNC_RESPONSE,
        )
        topic, first = await source.expect("status", types.UPDATE_REQUEST)
        _, second = await source.expect("status", types.RESYNC_RESPONSE)

    assert topic == topics.agent_events(mqtt_names.source, mqtt_names.consumer)
    assert first.get_data() == dict(STATUS)
    assert digest == statushash.status_hash(STATUS)
    for event in (first, second):
        assert types.str_extension(event, types.EXT_RESOURCE_ID) == "r1"
        assert types.int_extension(event, types.EXT_RESOURCE_VERSION) == 2
        assert event.get_extension(types.EXT_CLUSTER_NAME) == mqtt_names.consumer
        assert event.get_extension(types.EXT_ORIGINAL_SOURCE) == mqtt_names.source
        assert event.get_extension(types.EXT_STATUS_HASH) == digest
    assert first.get_extension(types.EXT_METADATA) == '{"name":"r1"}'
    assert second.get_extension(types.EXT_METADATA) == '{"name":"work-1"}'
    ids = [sequence.parse(e.get_extension(types.EXT_SEQUENCE_ID)) for e in (first, second)]
    assert ids[0] < ids[1]
    assert [e.get_id() for e in sent[-2:]] == [first.get_id(), second.get_id()]
    assert link.counters.status_sent == 2


async def test_status_resync_reaches_the_handler(
    agent_config: mqtt_config.MQTTConfig, mqtt_names: MQTTNames, source: Source
) -> None:
    handler = Recorder()
    async with make_link(agent_config, mqtt_names, handler) as link:
        await source.expect("spec", types.RESYNC_REQUEST)
        await source.send(
            source.status_resync([{"resourceID": "a", "statusHash": "h1"}, {"resourceID": "b", "statusHash": "h2"}]),
            source.status_resync([]),
        )
        await handler.until(lambda: len(handler.resyncs) == 2)
        assert handler.resyncs == [(mqtt_names.source, {"a": "h1", "b": "h2"}), (mqtt_names.source, {})]
        assert link.counters.status_resyncs_received == 2
