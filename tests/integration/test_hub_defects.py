"""Defects of the hub's long-lived loops (issue 9, item 7), each reproduced against real PostgreSQL and Mosquitto.

Each test failed on the code before its fix: it names the symptom, not the repair.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from protocol import cloudevents_mqtt, mqtt, topics
from protocol.errors import ConnectError
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames

pytestmark = pytest.mark.timeout(30)


# --- (a) the MQTT supervisor gives up after an unexpected exception
# --------------------------------------------------------------------------------------------------------------------


class Boom(Exception):
    """Stands for whatever gmqtt or the OS may raise that is neither a refusal nor a network error."""


@pytest.fixture
def subscribe_fails(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the next ``failures[0]`` SUBSCRIBE calls raise :class:`Boom` inside gmqtt's client."""
    failures = [0]
    original = mqtt._Client.subscribe

    def subscribe(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures[0] > 0:
            failures[0] -= 1
            raise Boom("subscribe exploded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mqtt._Client, "subscribe", subscribe)
    return failures


async def _round_trip(sub: mqtt.Broker, pub: mqtt.Broker, topic: str) -> None:
    await (await pub.publish(topic, cloudevents_mqtt.MQTTMessage(payload=b'{"n": 1}'), qos=1))
    async with asyncio.timeout(10):
        async for item in sub.messages():
            assert item.message.payload == b'{"n": 1}'
            return


async def test_mqtt_first_connect_survives_an_unexpected_error(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, subscribe_fails: list[int]
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    subscribe_fails[0] = 1
    async with (
        mqtt.Broker(
            config,
            client_id=mqtt_names.client_id("sub"),
            subscriptions=[topic],
            reconnect_min=0.05,
            first_connect_timeout=5,
        ) as sub,
        mqtt.Broker(config, client_id=mqtt_names.client_id("pub")) as pub,
    ):
        assert subscribe_fails[0] == 0
        assert sub.connection is not None
        await _round_trip(sub, pub, topic)


async def test_mqtt_reconnects_after_an_unexpected_error_on_a_later_link(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, subscribe_fails: list[int]
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    topic = topics.source_events(mqtt_names.source, mqtt_names.consumer)
    async with (
        mqtt.Broker(
            config,
            client_id=mqtt_names.client_id("sub"),
            subscriptions=[topic],
            reconnect_min=0.05,
            reconnect_max=0.2,
        ) as sub,
        mqtt.Broker(config, client_id=mqtt_names.client_id("pub"), reconnect_min=0.05, reconnect_max=0.2) as pub,
    ):
        subscribe_fails[0] = 2
        await asyncio.to_thread(mosquitto.restart)
        connection = await sub.wait_connected(timeout=15)
        await pub.wait_connected(timeout=15)
        assert subscribe_fails[0] == 0
        assert connection.generation == 2
        await _round_trip(sub, pub, topic)


async def test_mqtt_start_reports_the_error_not_just_a_timeout(
    mosquitto: MosquittoServer, mqtt_names: MQTTNames, subscribe_fails: list[int]
) -> None:
    config = mosquitto.config(source=mqtt_names.source)
    subscribe_fails[0] = 1_000_000
    broker = mqtt.Broker(
        config,
        client_id=mqtt_names.client_id("sub"),
        subscriptions=[topics.source_events(mqtt_names.source, mqtt_names.consumer)],
        reconnect_min=0.05,
        reconnect_max=0.1,
        first_connect_timeout=1.0,
    )
    with pytest.raises(ConnectError, match="subscribe exploded") as caught:
        await broker.start()
    assert isinstance(caught.value.__cause__, Boom)
