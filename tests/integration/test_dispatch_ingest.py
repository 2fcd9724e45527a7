"""Status ingest rejects what it must (counted by reason) and keeps serving; the dispatcher is fair per consumer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import databases
import pytest
from prometheus_client import REGISTRY

from protocol import cloudevents_mqtt, events, mqtt, sequence, topics, types
from protocol.cloudevents_mqtt import MQTTMessage
from server.dispatch import publisher
from server.dsn import plain
from server.services import consumers, resources
from server.settings import Settings
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import Hub, eventually


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("maestro_status_dropped_total", {"reason": reason}) or 0.0


@pytest.fixture
async def hub(
    database: databases.Database, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[Hub]:
    config = mosquitto.config(source=mqtt_names.source)
    hub = Hub(database, config, source=mqtt_names.source, client_id=mqtt_names.client_id("hub"), dsn=plain(db_url))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def sender(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> AsyncIterator[mqtt.Broker]:
    async with mqtt.Broker(mosquitto.config(source=mqtt_names.source), client_id=mqtt_names.client_id("x")) as b:
        yield b


def status_event(source: str, rid: str, *, cluster: str, version: int = 1, seq: str | None = None, **ext: Any) -> Any:
    extensions: dict[str, Any] = {
        "resourceid": rid,
        "resourceversion": version,
        "clustername": cluster,
        "originalsource": source,
        "sequenceid": seq or sequence.SequenceGenerator().next(),
    }
    extensions.update(ext)
    condition = {
        "type": "Applied",
        "status": "True",
        "reason": "x",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    return events.make_event(
        type=types.manifestbundle_type("status", types.UPDATE_REQUEST),
        source="agent",
        data={"conditions": [condition], "resourceStatus": []},
        extensions=extensions,
    )


async def test_unacceptable_messages_are_dropped_counted_and_the_hub_keeps_serving(
    hub: Hub, sender: mqtt.Broker, database: databases.Database, mqtt_names: MQTTNames
) -> None:
    src = mqtt_names.source
    for name in ("cluster-a", "cluster-b"):
        await consumers.create(database, {"name": name})
    rid_b = (
        await resources.create_single(database, {"consumer_name": "cluster-b", "manifest": configmap("b")}, source=src)
    ).row.id
    topic_a = topics.agent_events(src, "cluster-a")
    topic_b = topics.agent_events(src, "cluster-b")
    gen = sequence.SequenceGenerator()
    first_seq = gen.next()
    later_seq = gen.next()

    async def send(topic: str, message: MQTTMessage) -> None:
        await (await sender.publish(topic, message))

    def encoded(event: Any) -> MQTTMessage:
        return cloudevents_mqtt.encode(event, binary=True)

    cases: list[tuple[str, str, MQTTMessage]] = [
        ("malformed", topic_a, MQTTMessage(payload=b"\xff not json", content_type="application/cloudevents+json")),
        (
            "malformed",
            topic_a,
            MQTTMessage(payload=b'{"specversion":"1.0","id":"x"}', content_type="application/cloudevents+json"),
        ),
        ("malformed", topic_b, encoded(status_event(src, rid_b, cluster="cluster-b", seq="not-a-number"))),
        ("oversize", topic_a, MQTTMessage(payload=b"{" + b" " * (600 * 1024) + b"}", content_type="application/json")),
        # Consumer A's topic claiming a resource of consumer B: rejected before the database is asked.
        ("consumer_mismatch", topic_a, encoded(status_event(src, rid_b, cluster="cluster-b"))),
        ("wrong_consumer", topic_a, encoded(status_event(src, rid_b, cluster="cluster-a"))),
        ("foreign_source", topic_b, encoded(status_event("someone-else", rid_b, cluster="cluster-b"))),
        ("unknown_resource", topic_b, encoded(status_event(src, "no-such-id", cluster="cluster-b"))),
        ("stale_version", topic_b, encoded(status_event(src, rid_b, cluster="cluster-b", version=2))),
        ("accepted", topic_b, encoded(status_event(src, rid_b, cluster="cluster-b", seq=later_seq))),
        ("stale_sequence", topic_b, encoded(status_event(src, rid_b, cluster="cluster-b", seq=first_seq))),
        ("unchanged", topic_b, encoded(status_event(src, rid_b, cluster="cluster-b", seq=gen.next()))),
        (
            "unsupported_type",
            topic_b,
            MQTTMessage(
                payload=json.dumps(
                    {
                        "specversion": "1.0",
                        "id": "1",
                        "source": "a",
                        "type": types.manifestbundle_type("spec", types.CREATE_REQUEST),
                    }
                ).encode(),
                content_type="application/cloudevents+json",
            ),
        ),
    ]
    before = {reason: dropped(reason) for reason, _, _ in cases}
    for _, topic, message in cases:
        await send(topic, message)

    async def all_handled() -> bool:
        return len(hub.results) >= len(cases)

    await eventually(all_handled)
    assert hub.results[-len(cases) :] == [reason for reason, _, _ in cases]
    for reason, _, _ in cases:
        if reason != "accepted":
            assert dropped(reason) > before[reason], reason
    async with store_db.connection(database) as conn:
        status = await conn.fetchval("SELECT status FROM resources WHERE id = $1", rid_b)
        count = await conn.fetchval("SELECT count(*) FROM status_events WHERE resource_id = $1", rid_b)
    assert status["SequenceID"] == later_seq
    assert count == 1

    # Structured mode (MQTT 3.1.1 agents) is accepted too, with a newer sequence id and a new status.
    event = status_event(src, rid_b, cluster="cluster-b", seq=gen.next())
    event = events.make_event(
        type=event.get_type(),
        source="agent",
        data={"conditions": [], "resourceStatus": []},
        extensions={k: v for k, v in event.get_attributes().items() if k in types.EXTENSIONS},
    )
    await send(topic_b, cloudevents_mqtt.encode(event, binary=False))

    async def one_more() -> bool:
        return len(hub.results) > len(cases)

    await eventually(one_more)
    assert hub.results[-1] == "accepted"


class RecordingPublisher:
    """Stands in for the broker: records publish order, acknowledges at once after a little work."""

    binary_mode = True

    def __init__(self) -> None:
        self.order: list[tuple[str, str]] = []

    async def publish(
        self, topic: str, message: MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> Any:
        event = cloudevents_mqtt.decode(message)
        self.order.append((topics.parse(topic).consumer, event.get_type().rsplit(".", 1)[1]))
        await asyncio.sleep(0.0005)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_storm_of_deletes_on_one_consumer_does_not_starve_another(
    database: databases.Database, db_url: str
) -> None:
    await consumers.create(database, {"name": "storm"})
    await consumers.create(database, {"name": "calm"})
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(2000)]
    async with store_db.transaction(database) as conn:
        await conn.executemany(
            "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, deleted_at)"
            " VALUES ($1, $1, 'maestro', 'storm', 'Single', 1, $2, now())",
            [(rid, {"metadata": {}, "data": {"manifests": [configmap("x")]}}) for rid in ids],
        )
        await conn.executemany(
            "INSERT INTO events (source_id, consumer_name, event_type, version) VALUES ($1, 'storm', 'Delete', 1)",
            [(rid,) for rid in ids],
        )
    recorder = RecordingPublisher()
    settings = Settings.of(dispatch_poll_interval=0.2, dispatch_concurrency=4)
    dispatcher = publisher.Dispatcher(
        database, recorder, settings, dsn=plain(db_url), source_events="sources/maestro/consumers/+/sourceevents"
    )
    task = asyncio.create_task(dispatcher.run())
    try:

        async def storm_started() -> bool:
            return len(recorder.order) >= 200

        await eventually(storm_started)
        await resources.create_single(database, {"consumer_name": "calm", "manifest": configmap("c")}, source="maestro")

        async def calm_published() -> bool:
            return ("calm", "create_request") in recorder.order

        await eventually(calm_published)

        async def storm_done() -> bool:
            # NB: a batch is marked reconciled only after all of it is published, so wait for the marks too.
            async with store_db.connection(database) as conn:
                pending = await conn.fetchval("SELECT count(*) FROM events WHERE reconciled_date IS NULL")
            return len(recorder.order) >= 2001 and pending == 0

        await eventually(storm_done, timeout=60)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    position = recorder.order.index(("calm", "create_request"))
    storm_before = sum(1 for consumer, _ in recorder.order[:position] if consumer == "storm")
    print(f"calm create published after {storm_before} of the storm's deletes")
    assert storm_before < 1000, f"the calm consumer's create waited for {storm_before} of 2000 deletes"
    assert {action for consumer, action in recorder.order if consumer == "storm"} == {"delete_request"}
    async with store_db.connection(database) as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE reconciled_date IS NULL") == 0
