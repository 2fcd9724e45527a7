"""The transport survives crashes: a hub killed mid-burst and a broker restarted mid-stream lose nothing.

The hub is a real ``maestro server`` subprocess against mosquitto and PostgreSQL; agents are simulated in this
process (persistent MQTT sessions, as real agents keep). Writes go through REST and are retried while the hub is
down, so each one is idempotent: creates carry their own id, updates set a value (an unchanged spec writes
nothing), deletes may repeat. An agent that was offline while its resources changed is covered by
``test_dispatch_resync.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import databases
import httpx
import pytest

from agent.simulator import SimulatedAgent
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import HubProcess, eventually, simulated_agent, until_done, write_mqtt_config

CONSUMERS = ("cluster-r1", "cluster-r2", "cluster-r3")


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


@pytest.fixture
def hub(tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> Iterator[HubProcess]:
    config = write_mqtt_config(
        tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    process = HubProcess(
        db_url=db_url,
        mqtt_config_file=config,
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
    )
    process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
async def agents(mosquitto: MosquittoServer, mqtt_names: MQTTNames) -> AsyncIterator[dict[str, SimulatedAgent]]:
    started: dict[str, SimulatedAgent] = {}
    try:
        for consumer in CONSUMERS:
            agent = simulated_agent(
                mosquitto.config(source=mqtt_names.source, consumer=consumer),
                source=mqtt_names.source,
                consumer=consumer,
                client_id=mqtt_names.client_id(f"agent-{consumer}"),
            )
            await agent.start()
            started[consumer] = agent
        yield started
    finally:
        for agent in started.values():
            await agent.stop()


async def rows(database: databases.Database) -> dict[str, Any]:
    async with store_db.connection(database) as conn:
        found = await conn.fetch("SELECT id, consumer_name, version, status, payload FROM resources")
    return {r["id"]: r for r in found}


async def pending_events(database: databases.Database) -> int:
    async with store_db.connection(database) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE reconciled_date IS NULL"))


async def in_parallel(jobs: list[Callable[[], Awaitable[None]]], *, concurrency: int = 8) -> None:
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


class Writer:
    """Creates, updates and deletes through REST, each retried until it lands; remembers what it expects."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.expected: dict[str, tuple[str, str]] = {}
        """resource id → (consumer, value of the live spec)."""
        self.names: dict[str, str] = {}
        self.deleted: set[str] = set()

    def create(self, consumer: str, name: str) -> Callable[[], Awaitable[None]]:
        rid = str(uuid.uuid4())

        async def job() -> None:
            body = {"id": rid, "consumer_name": consumer, "manifest": configmap(name)}
            # NB: 200 is a retried create whose first attempt committed before the hub died (creates are idempotent
            # by id: the same body again answers the resource, not a conflict).
            await until_done(self.client, "POST", "/resources", json=body, ok=(200, 201))
            self.expected[rid] = (consumer, "1")
            self.names[rid] = name

        return job

    def update(self, rid: str, value: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            body = {"version": 0, "manifest": configmap(self.names[rid], value)}
            await until_done(self.client, "PATCH", f"/resources/{rid}", json=body, ok=(200,))
            self.expected[rid] = (self.expected[rid][0], value)

        return job

    def delete(self, rid: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await until_done(self.client, "DELETE", f"/resources/{rid}", ok=(202, 204, 404))
            self.expected.pop(rid, None)
            self.deleted.add(rid)

        return job


async def create_consumers(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.api) as client:
        for consumer in CONSUMERS:
            await until_done(client, "POST", "/consumers", json={"name": consumer}, ok=(201,))


def delivered_everything(writer: Writer, agents: dict[str, SimulatedAgent]) -> bool:
    for rid, (consumer, value) in writer.expected.items():
        work = agents[consumer].works.get(rid)
        if work is None or work.bundle["manifests"][0]["data"] != {"v": value}:
            return False
    return not any(rid in agent.works for agent in agents.values() for rid in writer.deleted)


async def converged(writer: Writer, agents: dict[str, SimulatedAgent], database: databases.Database) -> bool:
    if not delivered_everything(writer, agents):
        return False
    found = await rows(database)
    if set(found) != set(writer.expected):
        return False
    for row in found.values():
        status = row["status"]
        if status is None or status.get("ObservedVersion") != row["version"]:
            return False
    return await pending_events(database) == 0


def assert_state(writer: Writer, agents: dict[str, SimulatedAgent], found: dict[str, Any]) -> None:
    for rid, (consumer, value) in writer.expected.items():
        row = found[rid]
        assert row["consumer_name"] == consumer
        assert row["payload"]["data"]["manifests"][0]["data"] == {"v": value}
        assert agents[consumer].works[rid].version == row["version"]
        assert row["status"]["ObservedVersion"] == row["version"]
    for agent in agents.values():
        for rid, history in agent.history.items():
            versions = history.received
            assert versions == sorted(versions), f"resource {rid}: versions received out of order: {versions}"
        assert agent.counters.stale == 0


async def test_hub_killed_during_a_dispatch_burst_delivers_everything_after_restart(
    hub: HubProcess, agents: dict[str, SimulatedAgent], database: databases.Database
) -> None:
    await hub.wait_ready()
    await create_consumers(hub)
    killed = asyncio.Event()

    async def backlog() -> bool:
        """Agents are receiving and the outbox holds events not yet published (or published, not yet marked)."""
        return sum(a.counters.applied for a in agents.values()) >= 100 and await pending_events(database) > 0

    async def killer() -> None:
        await eventually(backlog, timeout=120, interval=0.01)
        await asyncio.to_thread(hub.kill)
        killed.set()
        await asyncio.sleep(0.5)
        hub.start()
        await hub.wait_ready()

    async with httpx.AsyncClient(base_url=hub.api, timeout=30) as client:
        writer = Writer(client)
        kill_task = asyncio.create_task(killer())
        creates = [writer.create(CONSUMERS[n % 3], f"cm-{n}") for n in range(420)]
        await in_parallel(creates, concurrency=16)
        ids = sorted(writer.expected)
        deleted = ids[1::3][::4]
        await in_parallel([writer.update(rid, "2") for rid in ids[::3]] + [writer.delete(rid) for rid in deleted])
        await in_parallel([writer.update(rid, "3") for rid in ids[::6]])  # NB: half of those again
        await kill_task
    assert killed.is_set()

    await eventually(lambda: converged(writer, agents, database), timeout=120, interval=0.25)
    found = await rows(database)
    assert_state(writer, agents, found)
    assert writer.deleted == set(deleted)
    assert len(found) == 420 - len(deleted)
    assert all(found[rid]["version"] == 3 for rid in ids[::6])
    assert all(found[rid]["version"] == 2 for rid in set(ids[::3]) - set(ids[::6]))
    assert hub.output().count("REST listening on") >= 2  # started twice


async def test_broker_restart_mid_stream_loses_nothing(
    hub: HubProcess,
    agents: dict[str, SimulatedAgent],
    database: databases.Database,
    mosquitto: MosquittoServer,
) -> None:
    await hub.wait_ready()
    await create_consumers(hub)
    restarted = asyncio.Event()

    async def restarter() -> None:
        await eventually(lambda: _true(sum(a.counters.applied for a in agents.values()) >= 60), timeout=120)
        await asyncio.to_thread(mosquitto.restart)
        restarted.set()

    async with httpx.AsyncClient(base_url=hub.api, timeout=30) as client:
        writer = Writer(client)
        restart_task = asyncio.create_task(restarter())

        async def paced(job: Callable[[], Awaitable[None]]) -> None:
            await job()
            await asyncio.sleep(0.01)  # NB: a steady stream, so that the restart lands in the middle of it

        creates = [writer.create(CONSUMERS[n % 3], f"cm-{n}") for n in range(300)]
        await in_parallel([lambda job=job: paced(job) for job in creates], concurrency=4)
        await restart_task
        ids = sorted(writer.expected)
        await in_parallel([writer.update(rid, "2") for rid in ids[::4]])
    assert restarted.is_set()

    await eventually(lambda: converged(writer, agents, database), timeout=120, interval=0.25)
    assert_state(writer, agents, await rows(database))
    await hub.wait_ready()  # NB: the hub is linked to the broker again (readiness requires it)
    assert all(a.broker.is_connected for a in agents.values())


async def _true(value: bool) -> bool:
    return value
