"""Issue 8, finding 2: the embedded broker requires credentials and confines each agent to its own topics.

Tried as someone else on the same host would: no user, a made-up user, a wrong password, one agent's credentials on
another consumer's topics (reading its manifests, forging its status), and a renewed agent password."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from protocol import mqtt, mqtt_config
from protocol.cloudevents_mqtt import MQTTMessage
from protocol.errors import ConnectError, SubscribeError
from server.dispatch.embedded_mqtt import EmbeddedBroker
from tests.fixtures.postgres import free_port

SOURCE = "maestro"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    embedded = EmbeddedBroker(port=free_port(), data_dir=tmp_path)
    await embedded.start()
    try:
        yield embedded
    finally:
        await embedded.stop()


def agent_config(broker: EmbeddedBroker, tmp_path: Path, consumer: str) -> mqtt_config.MQTTConfig:
    """What ``maestro agent-config`` prints, as a user gets it."""
    printed = subprocess.run(
        [sys.executable, "-m", "server.cli", "agent-config", "--consumer", consumer, "--data-dir", str(tmp_path),
         "--embedded-mqtt-port", str(broker.port)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return dataclasses.replace(mqtt_config.from_mapping(yaml.safe_load(printed)), dial_timeout=3.0)


def with_credentials(
    broker: EmbeddedBroker, username: str | None, password: str | None = None
) -> mqtt_config.MQTTConfig:
    return dataclasses.replace(broker.config(SOURCE), username=username, password=password, dial_timeout=3.0)


@pytest.mark.parametrize(
    ("username", "password"), [(None, None), ("cluster1-agent", None), ("maestro", "guess"), ("nobody", "x")]
)
async def test_logins_without_valid_credentials_are_refused(
    broker: EmbeddedBroker, username: str | None, password: str | None
) -> None:
    with pytest.raises(ConnectError):
        async with mqtt.Broker(with_credentials(broker, username, password), client_id="intruder"):
            pass


async def test_an_agent_reaches_only_its_own_consumers_topics(broker: EmbeddedBroker, tmp_path: Path) -> None:
    one, two = agent_config(broker, tmp_path, "cluster1"), agent_config(broker, tmp_path, "cluster2")
    spec_topic = f"sources/{SOURCE}/consumers/cluster1/sourceevents"
    status_topic = f"sources/{SOURCE}/consumers/cluster1/agentevents"
    statuses = f"sources/{SOURCE}/consumers/+/agentevents"
    async with (
        mqtt.Broker(broker.config(SOURCE), client_id="hub", subscriptions=[statuses]) as hub,
        mqtt.Broker(one, client_id="cluster1-agent1", subscriptions=[spec_topic]) as agent1,
    ):  # fmt: skip
        # cluster2's agent may not subscribe to cluster1's manifests...
        with pytest.raises((SubscribeError, ConnectError)):
            async with mqtt.Broker(two, client_id="cluster2-snoop", subscriptions=[spec_topic]):
                pass
        # ... nor forge cluster1's status: the broker drops it, the hub never sees it.
        async with mqtt.Broker(two, client_id="cluster2-forge") as agent2:
            await (await agent2.publish(status_topic, MQTTMessage(payload=b'{"forged": true}')))
        # cluster1's agent gets its specs and its statuses reach the hub.
        await (await hub.publish(spec_topic, MQTTMessage(payload=b'{"spec": 1}')))
        await (await agent1.publish(status_topic, MQTTMessage(payload=b'{"status": 1}')))
        got_spec = await asyncio.wait_for(anext(agent1.messages()), timeout=5)
        got_status = await asyncio.wait_for(anext(hub.messages()), timeout=5)
        assert got_spec.message.payload == b'{"spec": 1}'
        assert got_status.message.payload == b'{"status": 1}'  # the first status the hub sees is the real one


async def test_a_renewed_agent_password_replaces_the_old_one(broker: EmbeddedBroker, tmp_path: Path) -> None:
    old = agent_config(broker, tmp_path, "cluster1")
    new = agent_config(broker, tmp_path, "cluster1")
    async with mqtt.Broker(new, client_id="cluster1-agent1"):
        pass
    with pytest.raises(ConnectError):
        async with mqtt.Broker(old, client_id="cluster1-old"):
            pass


def test_the_hub_password_is_kept_across_starts(tmp_path: Path) -> None:
    first = EmbeddedBroker(port=free_port(), data_dir=tmp_path).password
    assert EmbeddedBroker(port=free_port(), data_dir=tmp_path).password == first
    files = tmp_path / "mqtt"
    assert oct((files / "users").stat().st_mode)[-3:] == "600"
    assert oct((files / "hub.password").stat().st_mode)[-3:] == "600"
    assert first not in (files / "users").read_text()


async def test_an_agent_cannot_take_over_the_hubs_client_id(broker: EmbeddedBroker, tmp_path: Path) -> None:
    one = agent_config(broker, tmp_path, "cluster1")
    async with mqtt.Broker(broker.config(SOURCE), client_id="maestro") as hub:
        for stolen in ("maestro", "cluster2-work-agent-client"):
            with pytest.raises(ConnectError):
                async with mqtt.Broker(one, client_id=stolen):
                    pass
        assert hub.is_connected
        async with mqtt.Broker(one, client_id="cluster1-work-agent-client"):
            pass
        await asyncio.sleep(0.5)
        assert hub.is_connected
        assert hub.connection is not None
        assert hub.connection.generation == 1  # never kicked out and reconnected
