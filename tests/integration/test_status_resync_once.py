"""One status resync per cause: a hub starting with many consumers asks each agent once (not once for the link
and again for the "takeover" of its first heartbeat), and a real takeover asks exactly the consumers taken."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import databases
import pytest

from protocol import cloudevents_mqtt, mqtt, types
from server.dispatch import instances
from server.dispatch.transport import Transport
from server.dsn import plain
from server.services import consumers, resources
from server.settings import Settings
from server.store.db import transaction
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import eventually

CONSUMERS = [f"c{n:03d}" for n in range(150)]
NGINX = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"}}
RESYNC = types.manifestbundle_type("status", types.RESYNC_REQUEST)


class Agents:
    """Every consumer's agent side of the broker at once: counts the status resync requests per consumer."""

    def __init__(self) -> None:
        self.asked: collections.Counter[str] = collections.Counter()

    async def listen(self, broker: mqtt.Broker) -> None:
        async for item in broker.messages():
            event = cloudevents_mqtt.decode(item.message)
            if event.get_type() == RESYNC:
                self.asked[str(event.get_extension(types.EXT_CLUSTER_NAME))] += 1


@contextlib.asynccontextmanager
async def running(*tasks: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("subscription", ["broadcast", "shared"])
async def test_startup_asks_each_consumer_once_and_a_takeover_asks_once_more(
    database: databases.Database, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames, subscription: str
) -> None:
    source = mqtt_names.source
    for name in CONSUMERS:
        await consumers.create(database, {"name": name})
        await resources.create_bundle(database, {"consumer_name": name, "manifests": [NGINX]}, source=source)
    # A second replica is live (and owns its share) when this one starts; it will die later.
    async with transaction(database) as conn:
        await conn.execute("INSERT INTO server_instances (id, ready, last_heartbeat) VALUES ('other', true, now())")
    settings = Settings.of(
        db_url=db_url,
        source_id=source,
        client_id=mqtt_names.client_id("hub"),
        heartbeat_interval=60,
        subscription_type=subscription,  # type: ignore[arg-type]
    )
    registry = instances.Registry(database, settings.transport)
    transport = Transport(settings, database, mosquitto.config(source=source), dsn=plain(db_url), registry=registry)
    agents = Agents()
    watcher = mqtt.Broker(
        mosquitto.config(source=source),
        client_id=mqtt_names.client_id("agents"),
        subscriptions=[f"sources/{source}/consumers/+/sourceevents"],
    )
    await watcher.start()
    tasks = (
        asyncio.create_task(agents.listen(watcher)),
        asyncio.create_task(registry.run()),
        asyncio.create_task(transport.run()),
    )
    async with running(*tasks):
        await registry.registered.wait()
        mine = {n for n in CONSUMERS if registry.owns(n)}
        theirs = set(CONSUMERS) - mine
        assert mine
        assert theirs

        async def asked_mine() -> bool:
            return set(agents.asked) == mine

        await eventually(asked_mine)

        # The other replica dies: this one takes its consumers over and asks those once. With a shared
        # subscription the dead replica also had its share of every consumer's statuses: all are asked once more.
        async with transaction(database) as conn:
            await conn.execute("UPDATE server_instances SET ready = false WHERE id = 'other'")
        await registry.fresh()
        assert all(registry.owns(n) for n in CONSUMERS)
        expected = dict.fromkeys(theirs, 1) | dict.fromkeys(mine, 1 if subscription == "broadcast" else 2)

        async def asked_again() -> bool:
            return all(agents.asked[n] >= c for n, c in expected.items())

        await eventually(asked_again)  # NB: the barrier: the takeover's requests come after the startup's
        assert dict(agents.asked) == expected
    await watcher.close()
