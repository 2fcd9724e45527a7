"""The simulated agent against a real mosquitto, with the test acting as the source (the hub's side)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from agent.simulator import SimulatedAgent
from protocol import cloudevents_mqtt, events, mqtt, statushash, topics, types
from protocol.backoff import Backoff
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames

MANIFESTS = [
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2},
    },
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}},
]


class Source:
    """The hub's side of the wire, hand-driven by the test."""

    def __init__(self, broker: mqtt.Broker, names: MQTTNames) -> None:
        self.broker = broker
        self.names = names
        self.inbox: asyncio.Queue[CloudEvent] = asyncio.Queue()

    async def pump(self) -> None:
        async for item in self.broker.messages():
            assert topics.parse(item.topic).consumer == self.names.consumer
            await self.inbox.put(cloudevents_mqtt.decode(item.message))

    async def expect(self, action: str, subresource: str = "status", *, timeout: float = 10) -> CloudEvent:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.inbox.get()
                parsed = types.event_type(event)
                if (parsed.subresource, parsed.action) == (subresource, action):
                    return event

    async def expect_next(self, action: str, resource_id: str, *, timeout: float = 10) -> CloudEvent:
        """The very next event is the status ``action`` for ``resource_id``: sent after something that must get
        no answer, it is the barrier proving that nothing else came (the agent answers in order: status resyncs
        inline, spec events of one resource one after the other)."""
        async with asyncio.timeout(timeout):
            event = await self.inbox.get()
        got = (types.event_type(event).action, event.get_extension("resourceid"))
        assert got == (action, resource_id), f"expected only {action} for {resource_id} here, got {got}"
        return event

    async def send(
        self,
        action: str,
        *,
        resource_id: str = "r1",
        version: int = 1,
        subresource: str = "spec",
        data: dict[str, Any] | None = None,
        cluster: str | None = None,
        **extensions: object,
    ) -> None:
        event = events.make_event(
            type=types.manifestbundle_type(subresource, action),  # type: ignore[arg-type]
            source=self.names.source,
            data=data if data is not None else {"manifests": MANIFESTS},
            extensions={
                "resourceid": resource_id if subresource == "spec" else None,
                "resourceversion": version if subresource == "spec" else None,
                "clustername": cluster or self.names.consumer,
                **extensions,
            },
        )
        topic = topics.source_events(self.names.source, self.names.consumer)
        await (await self.broker.publish(topic, cloudevents_mqtt.to_binary(event)))


@pytest.fixture
async def source(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> AsyncIterator[Source]:
    config = mosquitto.config(source=mqtt_names.source)
    async with mqtt.Broker(
        config,
        client_id=mqtt_names.client_id("hub"),
        subscriptions=[topics.server_subscription(mqtt_names.source)],
    ) as broker:
        hub = Source(broker, mqtt_names)
        pump = asyncio.create_task(hub.pump())
        yield hub
        pump.cancel()


def _agent(mosquitto: MosquittoServer, names: MQTTNames, **options: Any) -> SimulatedAgent:
    config = mosquitto.config(source=names.source, consumer=names.consumer)
    return SimulatedAgent(consumer=names.consumer, config=config, source=names.source, **options)


async def test_apply_status_duplicate_stale_delete(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source
) -> None:
    async with _agent(mosquitto, mqtt_names) as agent:
        hello = await source.expect(types.RESYNC_REQUEST, "spec")
        assert hello.get_data() == {"resourceVersions": []}
        assert hello.get_extension("originalsource") == ""
        assert hello.get_extension("clustername") == mqtt_names.consumer

        await source.send(types.CREATE_REQUEST, metadata='{"name":"work-1","namespace":"ns"}')
        status = await source.expect(types.UPDATE_REQUEST)
        data = status.get_data()
        assert isinstance(data, dict)
        assert {c["type"]: c["status"] for c in data["conditions"]} == {"Applied": "True", "Available": "True"}
        assert [m["resourceMeta"]["kind"] for m in data["resourceStatus"]] == ["Deployment", "ConfigMap"]
        feedback = data["resourceStatus"][0]["statusFeedback"]["values"][0]
        assert feedback == {"name": "ReadyReplicas", "fieldValue": {"type": "Integer", "integer": 2}}
        assert status.get_extension("resourceid") == "r1"
        assert status.get_extension("resourceversion") == 1
        assert status.get_extension("clustername") == mqtt_names.consumer
        assert status.get_extension("originalsource") == mqtt_names.source
        assert status.get_extension("metadata") == '{"name":"work-1","namespace":"ns"}'
        assert status.get_extension("statushash") == statushash.status_hash(data)
        first_seq = status.get_extension("sequenceid")

        await source.send(types.CREATE_REQUEST)  # the same version again: idempotent, status re-sent
        again = await source.expect(types.UPDATE_REQUEST)
        assert again.get_extension("statushash") == status.get_extension("statushash")
        assert int(again.get_extension("sequenceid")) > int(first_seq)

        await source.send(types.UPDATE_REQUEST, version=2)
        assert (await source.expect(types.UPDATE_REQUEST)).get_extension("resourceversion") == 2
        await source.send(types.UPDATE_REQUEST, version=1)  # stale
        await source.send(types.CREATE_REQUEST, resource_id="r9", cluster="someone-else")
        await source.send(types.UPDATE_REQUEST, version=2)  # the barrier: handled after the stale one, re-sent
        assert (await source.expect_next(types.UPDATE_REQUEST, "r1")).get_extension("resourceversion") == 2
        assert agent.counters.stale == 1
        assert agent.counters.other_cluster == 1
        assert agent.counters.duplicates == 2  # the first CREATE_REQUEST again, and the barrier
        assert set(agent.works) == {"r1"}

        await source.send(types.DELETE_REQUEST, version=2, data={}, deletiontimestamp=datetime.now(UTC))
        deleted = await source.expect(types.UPDATE_REQUEST)
        deleted_data = deleted.get_data()
        assert isinstance(deleted_data, dict)
        [condition] = deleted_data["conditions"]
        assert (condition["type"], condition["status"], condition["reason"]) == ("Deleted", "True", "ManifestsDeleted")
        assert deleted.get_extension("resourceversion") == 2
        assert agent.works == {}


async def test_status_resync(mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source) -> None:
    async with _agent(mosquitto, mqtt_names) as agent:
        await source.expect(types.RESYNC_REQUEST, "spec")
        for rid in ("a", "b"):
            await source.send(types.CREATE_REQUEST, resource_id=rid)
            await source.expect(types.UPDATE_REQUEST)
        hashes = {rid: work.status_hash for rid, work in agent.works.items()}

        await source.send(
            types.RESYNC_REQUEST,
            subresource="status",
            data={
                "statusHashes": [
                    {"resourceID": "a", "statusHash": "stale"},
                    {"resourceID": "b", "statusHash": hashes["b"]},
                    {"resourceID": "unknown", "statusHash": "x"},
                ]
            },
        )
        reply = await source.expect(types.RESYNC_RESPONSE)
        assert reply.get_extension("resourceid") == "a"
        barrier = {"statusHashes": [{"resourceID": "a", "statusHash": "stale"}]}
        await source.send(types.RESYNC_REQUEST, subresource="status", data=barrier)
        await source.expect_next(types.RESYNC_RESPONSE, "a")  # not "b" (same hash) nor "unknown"

        await source.send(types.RESYNC_REQUEST, subresource="status", data={"statusHashes": []})
        replies = {(await source.expect(types.RESYNC_RESPONSE)).get_extension("resourceid") for _ in range(2)}
        assert replies == {"a", "b"}
        assert agent.counters.status_resyncs_answered == 3  # with the barrier

        await agent.send_spec_resync()
        listing = await source.expect(types.RESYNC_REQUEST, "spec")
        assert listing.get_data() == {
            "resourceVersions": [{"resourceID": "a", "resourceVersion": 1}, {"resourceID": "b", "resourceVersion": 1}]
        }


async def test_failures_and_delay(mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source) -> None:
    async with _agent(mosquitto, mqtt_names, failure_rate=1.0, delay=0.05, seed=1) as agent:
        await source.expect(types.RESYNC_REQUEST, "spec")
        await source.send(types.CREATE_REQUEST)
        status = await source.expect(types.UPDATE_REQUEST)
        data = status.get_data()
        assert isinstance(data, dict)
        assert {c["type"]: c["status"] for c in data["conditions"]}["Applied"] == "False"
        assert agent.counters.failed == 1


async def test_malformed_spec_is_counted_not_fatal(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source
) -> None:
    async with _agent(mosquitto, mqtt_names) as agent:
        await source.expect(types.RESYNC_REQUEST, "spec")
        topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
        await (await source.broker.publish(topic, cloudevents_mqtt.MQTTMessage(payload=b"garbage", content_type="x")))
        await source.send(types.CREATE_REQUEST)
        await source.expect(types.UPDATE_REQUEST)
        assert agent.counters.malformed == 1


async def test_resync_on_reconnect_after_broker_restart(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source
) -> None:
    agent = _agent(mosquitto, mqtt_names, broker_options={"reconnect": Backoff(min=0.1, max=0.5)})
    async with agent:
        await source.expect(types.RESYNC_REQUEST, "spec")
        await source.send(types.CREATE_REQUEST)
        await source.expect(types.UPDATE_REQUEST)
        await asyncio.to_thread(mosquitto.restart)
        listing = await source.expect(types.RESYNC_REQUEST, "spec", timeout=20)
        assert listing.get_data() == {"resourceVersions": [{"resourceID": "r1", "resourceVersion": 1}]}


async def test_restart_keeps_works_counters_and_sequence(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source
) -> None:
    agent = _agent(mosquitto, mqtt_names)
    async with agent:
        await source.expect(types.RESYNC_REQUEST, "spec")
        await source.send(types.CREATE_REQUEST)
        first = await source.expect(types.UPDATE_REQUEST)
    async with agent:
        listing = await source.expect(types.RESYNC_REQUEST, "spec")
        assert listing.get_data() == {"resourceVersions": [{"resourceID": "r1", "resourceVersion": 1}]}
        await source.send(types.CREATE_REQUEST)  # a repeat: the same status, with a newer sequence id
        again = await source.expect(types.UPDATE_REQUEST)
    assert again.get_extension("statushash") == first.get_extension("statushash")
    assert int(again.get_extension("sequenceid")) > int(first.get_extension("sequenceid"))
    counters = agent.counters
    assert (counters.applied, counters.duplicates, counters.spec_resyncs_sent, counters.status_sent) == (1, 1, 2, 2)
    assert [types.event_type(e).subresource for e in agent.sent] == ["spec", "status", "spec", "status"]
    assert [e.get_id() for e in agent.sent][1::2] == [first.get_id(), again.get_id()]
    assert agent.history["r1"].received == [1, 1]
    assert agent.history["r1"].applied == [1]


async def test_delayed_applies_keep_each_works_order(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, source: Source
) -> None:
    async with _agent(mosquitto, mqtt_names, delay=0.05) as agent:
        await source.expect(types.RESYNC_REQUEST, "spec")
        for version in (1, 2, 3):
            for rid in ("a", "b"):
                await source.send(types.UPDATE_REQUEST, resource_id=rid, version=version)
        await source.send(types.UPDATE_REQUEST, resource_id="a", version=2)  # stale by the time it is handled
        await agent.wait_until(lambda: agent.counters.applied == 6 and agent.counters.stale == 1)
        assert {rid: (h.received, h.applied) for rid, h in agent.history.items()} == {
            "a": ([1, 2, 3, 2], [1, 2, 3]),
            "b": ([1, 2, 3], [1, 2, 3]),
        }
        assert {rid: w.version for rid, w in agent.works.items()} == {"a": 3, "b": 3}
