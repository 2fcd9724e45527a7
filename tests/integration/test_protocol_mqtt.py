"""The MQTT adapter against a real mosquitto: both content modes, flow control, sessions, restarts,
sharing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from protocol import cloudevents_mqtt, events, mqtt, topics, types
from protocol.backoff import Backoff
from protocol.errors import BrokerClosedError, ConnectError, NotConnectedError
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames


def _event(n: int, *, source: str = "maestro") -> events.CloudEvent:
    return events.make_event(
        type=types.manifestbundle_type("spec", types.CREATE_REQUEST),
        source=source,
        data={"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{n}"}}]},
        extensions={"resourceid": f"r-{n}", "resourceversion": n, "clustername": "c1"},
    )


async def _collect(broker: mqtt.Broker, count: int, *, timeout: float = 30) -> list[mqtt.Received]:
    received: list[mqtt.Received] = []

    async def run() -> None:
        async for item in broker.messages():
            received.append(item)
            if len(received) >= count:
                return

    async with asyncio.timeout(timeout):
        await run()
    return received


def _n(item: mqtt.Received) -> int:
    return int(cloudevents_mqtt.decode(item.message).get_extension("resourceversion"))


@pytest.fixture
async def publisher(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> AsyncIterator[mqtt.Broker]:
    config = mosquitto.config(source=mqtt_names.source)
    async with mqtt.Broker(
        config, client_id=mqtt_names.client_id("pub"), reconnect=Backoff(min=0.1, max=60.0)
    ) as broker:
        yield broker


@pytest.mark.parametrize("version", [5, 3])
async def test_round_trip_in_both_modes(mosquitto: MosquittoServer, mqtt_names: MQTTNames, version: int) -> None:
    config = mosquitto.config(source=mqtt_names.source, protocol_version=version)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    async with (
        mqtt.Broker(config, client_id=mqtt_names.client_id("sub"), subscriptions=[topic]) as sub,
        mqtt.Broker(config, client_id=mqtt_names.client_id("pub")) as pub,
    ):
        assert pub.binary_mode is (version == 5)
        sent = _event(7, source=mqtt_names.source)
        message = cloudevents_mqtt.encode(sent, binary=pub.binary_mode)
        await (await pub.publish(topic, message))
        [item] = await _collect(sub, 1)
    assert item.topic == topic
    if version == 5:
        assert item.message.content_type == "application/json"
        assert ("ce-resourceversion", "7") in item.message.user_properties
    else:
        assert item.message.content_type is None
        assert item.message.user_properties == ()
    got = cloudevents_mqtt.decode(item.message)
    assert got.get_attributes() == sent.get_attributes()
    assert got.get_data() == sent.get_data()


async def test_window_keeps_below_default_receive_maximum(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, publisher: mqtt.Broker
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    async with mqtt.Broker(config, client_id=mqtt_names.client_id("sub"), subscriptions=[topic]) as sub:
        connection = publisher.connection
        assert connection is not None
        assert connection.receive_maximum == 20
        collector = asyncio.create_task(_collect(sub, 5000))
        message = cloudevents_mqtt.to_binary(_event(1, source=mqtt_names.source))
        for _ in range(5000):
            await publisher.publish(topic, message)
            assert publisher.in_flight <= 18
        await publisher.drain(timeout=30)
        assert len(await collector) == 5000


async def test_concurrent_publishers_share_the_window(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, publisher: mqtt.Broker
) -> None:
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    message = cloudevents_mqtt.to_binary(_event(1, source=mqtt_names.source))
    futures = await asyncio.gather(*(publisher.publish(topic, message) for _ in range(500)))
    await asyncio.gather(*futures)
    assert publisher.in_flight == 0


async def test_persistent_session_delivers_what_was_missed(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, publisher: mqtt.Broker
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    client_id = mqtt_names.client_id("agent")
    async with mqtt.Broker(config, client_id=client_id, subscriptions=[topic]):
        pass  # NB: subscribe once, then go away; the broker keeps the session.
    for n in range(50):
        await publisher.publish(topic, cloudevents_mqtt.to_binary(_event(n, source=mqtt_names.source)))
    await publisher.drain(timeout=10)
    async with mqtt.Broker(config, client_id=client_id, subscriptions=[topic]) as sub:
        assert sub.connection is not None
        assert sub.connection.session_present
        received = await _collect(sub, 50)
    assert [_n(item) for item in received] == list(range(50))


async def test_back_pressure_holds_messages_at_the_broker(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, publisher: mqtt.Broker
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    async with mqtt.Broker(config, client_id=mqtt_names.client_id("slow"), subscriptions=[topic], inbox_size=5) as sub:
        for n in range(300):
            await publisher.publish(topic, cloudevents_mqtt.to_binary(_event(n, source=mqtt_names.source)))
        await publisher.drain(timeout=10)
        await asyncio.sleep(0.3)
        # NB: the inbox bound plus what the broker has in flight to us (mosquitto measured 40), far below 300.
        assert len(sub._inbox) <= 5 + 50
        received = await _collect(sub, 300)
    assert [_n(item) for item in received] == list(range(300))


async def test_shared_subscription_splits_messages(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, publisher: mqtt.Broker
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    share = topics.server_subscription(mqtt_names.source, share_group=mqtt_names.group())
    async with (
        mqtt.Broker(config, client_id=mqtt_names.client_id("a"), subscriptions=[share]) as a,
        mqtt.Broker(config, client_id=mqtt_names.client_id("b"), subscriptions=[share]) as b,
    ):
        topic = topics.agent_events(mqtt_names.source, mqtt_names.consumer)
        for n in range(100):
            await publisher.publish(topic, cloudevents_mqtt.to_binary(_event(n, source=mqtt_names.source)))
        await publisher.drain(timeout=10)
        async with asyncio.timeout(10):
            while len(a._inbox) + len(b._inbox) < 100:  # noqa: ASYNC110 - the inboxes have no event to wait on
                await asyncio.sleep(0.01)
        got_a = [_n(x) for x in a._inbox]
        got_b = [_n(x) for x in b._inbox]
    assert sorted(got_a + got_b) == list(range(100))
    assert got_a
    assert got_b


async def test_connect_refused_then_closed_errors(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> None:
    config = mosquitto.config(port=1, dial_timeout=1.0)
    with pytest.raises(ConnectError):
        async with mqtt.Broker(config, client_id=mqtt_names.client_id("x"), first_connect_timeout=1.0):
            pass
    async with mqtt.Broker(mosquitto.config(), client_id=mqtt_names.client_id("y")) as broker:
        pass
    with pytest.raises(BrokerClosedError):
        await broker.publish("sources/a/consumers/b/sourceevents", cloudevents_mqtt.MQTTMessage(payload=b"{}"))


async def test_broker_restart_loses_nothing(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    total = 400
    async with (
        mqtt.Broker(
            config, client_id=mqtt_names.client_id("sub"), subscriptions=[topic], reconnect=Backoff(min=0.1, max=0.5)
        ) as sub,
        mqtt.Broker(
            config, client_id=mqtt_names.client_id("pub"), reconnect=Backoff(min=0.1, max=0.5), publish_timeout=30
        ) as pub,
    ):
        links: list[mqtt.Connection] = []

        async def watch() -> None:
            async for connection in sub.connections():
                links.append(connection)

        watcher = asyncio.create_task(watch())
        collector = asyncio.create_task(_collect(sub, total, timeout=60))

        async def produce() -> None:
            for n in range(total):
                await pub.publish(topic, cloudevents_mqtt.to_binary(_event(n, source=mqtt_names.source)))
                await asyncio.sleep(0.002)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(mosquitto.restart)
        await producer
        await pub.drain(timeout=30)
        # NB: at-least-once: duplicates are allowed, gaps are not.
        seen = {_n(item) for item in await collector}
        missing = set(range(total)) - seen
        if missing:  # stragglers re-sent after the reconnect may still be on their way
            more = await _collect(sub, len(missing), timeout=10)
            seen |= {_n(item) for item in more}
        assert seen == set(range(total))
        assert [c.generation for c in links][:2] == [1, 2]
        assert links[1].session_present
        watcher.cancel()


async def test_publish_times_out_while_broker_is_down(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    async with mqtt.Broker(config, client_id=mqtt_names.client_id("pub"), reconnect=Backoff(min=0.1, max=60.0)) as pub:
        await asyncio.to_thread(mosquitto.stop)
        try:
            await asyncio.sleep(0.3)
            assert not pub.is_connected
            with pytest.raises(NotConnectedError):
                await pub.publish(
                    topics.source_events(mqtt_names.source, mqtt_names.consumer),
                    cloudevents_mqtt.to_binary(_event(1)),
                    timeout=0.5,
                )
        finally:
            await asyncio.to_thread(mosquitto.start)
        await pub.wait_connected(timeout=10)
