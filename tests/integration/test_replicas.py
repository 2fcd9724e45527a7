"""Two hub replicas share one database and one broker: every spec is delivered, every status stored once, and
when one replica dies (SIGKILL) the survivor takes over its consumers and publishes its pending work.

Both subscription modes: ``shared`` (``$share/…``: the broker gives each status to one replica) and
``broadcast`` (both replicas receive every status; only the consumer's owner stores it).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import databases
import httpx
import pytest

from agent.simulator import SimulatedAgent
from server.dispatch.instances import owner
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import HubProcess, eventually, simulated_agent, until_done, write_mqtt_config

HEARTBEAT = 1.0


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


def split_consumers(a: str, b: str, *, each: int = 2) -> dict[str, list[str]]:
    """Consumer names of which ``each`` are owned by replica ``a`` and ``each`` by ``b`` while both are live."""
    owned: dict[str, list[str]] = {a: [], b: []}
    for n in itertools.count():
        name = f"cluster-{n}"
        mine = owned[owner(name, (a, b)) or a]
        if len(mine) < each:
            mine.append(name)
        if all(len(names) == each for names in owned.values()):
            return owned
    raise AssertionError("unreachable")


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> Iterator[tuple[HubProcess, HubProcess]]:
    config = write_mqtt_config(
        tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    args = ("--heartbeat-interval", str(HEARTBEAT), "--subscription-type", request.param)
    hubs = tuple(
        HubProcess(
            db_url=db_url,
            mqtt_config_file=config,
            source=mqtt_names.source,
            client_id=mqtt_names.client_id(f"hub-{name}"),
            log=tmp_path / f"hub-{name}.log",
            args=args,
        )
        for name in ("a", "b")
    )
    for hub in hubs:
        hub.start()
    try:
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:
            hub.kill()


@pytest.fixture
async def agents_for(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> AsyncIterator[dict[str, SimulatedAgent]]:
    """Started lazily by :func:`start_agents`, stopped here."""
    started: dict[str, SimulatedAgent] = {}
    yield started
    for agent in started.values():
        await agent.stop()


async def start_agents(
    started: dict[str, SimulatedAgent], consumers: list[str], mosquitto: MosquittoServer, names: MQTTNames
) -> None:
    for consumer in consumers:
        agent = simulated_agent(
            mosquitto.config(source=names.source, consumer=consumer),
            source=names.source,
            consumer=consumer,
            client_id=names.client_id(f"agent-{consumer}"),
        )
        await agent.start()
        started[consumer] = agent


async def create(client: httpx.AsyncClient, consumer: str) -> str:
    rid = str(uuid.uuid4())
    body = {"id": rid, "consumer_name": consumer, "manifest": configmap(f"cm-{rid[:8]}")}
    await until_done(client, "POST", "/resources", json=body, ok=(201,))
    return rid


async def all_delivered_with_status(
    database: databases.Database, agents: dict[str, SimulatedAgent], expected: dict[str, str]
) -> bool:
    if any(rid not in agents[consumer].works for rid, consumer in expected.items()):
        return False
    async with store_db.connection(database) as conn:
        found = await conn.fetch("SELECT id, version, status FROM resources WHERE id = ANY($1::text[])", list(expected))
    return len(found) == len(expected) and all(
        r["status"] is not None and r["status"]["ObservedVersion"] == r["version"] for r in found
    )


async def duplicate_statuses(database: databases.Database) -> list[Any]:
    async with store_db.connection(database) as conn:
        return list(
            await conn.fetch(
                "SELECT resource_id, status->>'SequenceID' AS seq, count(*) FROM status_events"
                " GROUP BY 1, 2 HAVING count(*) > 1"
            )
        )


async def resources_without_status_event(database: databases.Database) -> int:
    async with store_db.connection(database) as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM resources r WHERE NOT EXISTS"
                " (SELECT 1 FROM status_events s WHERE s.resource_id = r.id AND s.status_event_type = 'StatusUpdate')"
            )
        )


async def sees_replicas(hub: HubProcess, count: int) -> bool:
    return await hub.metric("server_instances_live") == count


@pytest.mark.parametrize("replicas", ["shared", "broadcast"], indirect=True)
async def test_two_replicas_deliver_once_and_the_survivor_takes_over(
    replicas: tuple[HubProcess, HubProcess],
    agents_for: dict[str, SimulatedAgent],
    database: databases.Database,
    mosquitto: MosquittoServer,
    mqtt_names: MQTTNames,
) -> None:
    a, b = replicas
    await a.wait_ready()
    await b.wait_ready()
    await eventually(lambda: sees_replicas(a, 2), timeout=30, interval=0.2)
    await eventually(lambda: sees_replicas(b, 2), timeout=30, interval=0.2)
    owned = split_consumers(a.client_id, b.client_id)
    consumers = owned[a.client_id] + owned[b.client_id]
    await start_agents(agents_for, consumers, mosquitto, mqtt_names)
    expected: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=a.api, timeout=30) as via_a, httpx.AsyncClient(base_url=b.api) as via_b:
        for consumer in consumers:
            await until_done(via_a, "POST", "/consumers", json={"name": consumer}, ok=(201,))
        for n in range(30):
            for consumer in consumers:
                expected[await create(via_a if n % 2 else via_b, consumer)] = consumer
        await eventually(lambda: all_delivered_with_status(database, agents_for, expected), timeout=60, interval=0.2)
        assert await duplicate_statuses(database) == []
        assert await resources_without_status_event(database) == 0
        # NB: both replicas served: each published the specs of the consumers it owns.
        assert await a.metric("maestro_spec_events_published_total") > 0
        assert await b.metric("maestro_spec_events_published_total") > 0

        await b.wait_ready()
        b.kill()
        # Written while the survivor still counts b as live: b's consumers' events wait in the outbox for a
        # takeover, and the survivor must publish them once b's heartbeat is stale.
        after_kill: dict[str, str] = {}
        for _ in range(10):
            for consumer in consumers:
                after_kill[await create(via_a, consumer)] = consumer
        await eventually(lambda: sees_replicas(a, 1), timeout=10 * HEARTBEAT, interval=0.2)
        await eventually(lambda: all_delivered_with_status(database, agents_for, after_kill), timeout=60, interval=0.2)
    expected |= after_kill
    assert await all_delivered_with_status(database, agents_for, expected)
    assert await duplicate_statuses(database) == []
    assert await resources_without_status_event(database) == 0

    async def all_reconciled() -> bool:  # NB: a published batch is marked by the next sweep, within MARK_DELAY.
        async with store_db.connection(database) as conn:
            return await conn.fetchval("SELECT count(*) FROM events WHERE reconciled_date IS NULL") == 0

    await eventually(all_reconciled, timeout=5)
    assert "took over 2 consumers" in a.output()
    for agent in agents_for.values():
        assert agent.counters.stale == 0
