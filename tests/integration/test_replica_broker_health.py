"""A replica that cannot reach the broker owns no consumers (issue 8, finding 4): it does not heartbeat as ready,
so the healthy replica serves every consumer instead of half of them waiting for one that cannot deliver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import databases
import httpx
import pytest

from agent.simulator import SimulatedAgent
from server.dispatch.instances import owner
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import free_port
from tests.integration.dispatch_support import HubProcess, eventually, until_done, write_mqtt_config
from tests.integration.test_replicas import all_delivered_with_status, create, start_agents

HEARTBEAT = 1.0


@pytest.fixture
async def agents() -> AsyncIterator[dict[str, SimulatedAgent]]:
    started: dict[str, SimulatedAgent] = {}
    yield started
    for agent in started.values():
        await agent.stop()


async def test_a_replica_without_its_broker_owns_nothing(
    tmp_path: Path,
    db_url: str,
    database: databases.Database,
    mosquitto: MosquittoServer,
    mqtt_names: MQTTNames,
    agents: dict[str, SimulatedAgent],
) -> None:
    good = write_mqtt_config(tmp_path / "good.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source)
    # NB: nothing listens on this port: the replica keeps retrying, its REST API and database stay fine.
    broken = write_mqtt_config(tmp_path / "broken.yaml", host="127.0.0.1", port=free_port(), source=mqtt_names.source)
    args = ("--heartbeat-interval", str(HEARTBEAT))
    healthy = HubProcess(
        db_url=db_url, mqtt_config_file=good, source=mqtt_names.source, client_id=mqtt_names.client_id("ok"),
        log=tmp_path / "ok.log", args=args,
    )  # fmt: skip
    cut_off = HubProcess(
        db_url=db_url, mqtt_config_file=broken, source=mqtt_names.source, client_id=mqtt_names.client_id("cut"),
        log=tmp_path / "cut.log", args=args,
    )  # fmt: skip
    healthy.start()
    cut_off.start()
    try:
        await healthy.wait_ready()
        # Consumers the cut-off replica would own if it counted as live: half of them by rendezvous hashing.
        both = (healthy.client_id, cut_off.client_id)
        consumers = [f"cluster-{n}" for n in range(8)]
        assert any(owner(c, both) == cut_off.client_id for c in consumers)
        await start_agents(agents, consumers, mosquitto, mqtt_names)
        expected: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=healthy.api, timeout=30) as client:
            for consumer in consumers:
                await until_done(client, "POST", "/consumers", json={"name": consumer}, ok=(201,))
            for _ in range(3):
                for consumer in consumers:
                    expected[await create(client, consumer)] = consumer
        await eventually(lambda: all_delivered_with_status(database, agents, expected), timeout=30, interval=0.2)
        async with store_db.connection(database) as conn:
            ready = dict(await conn.fetch("SELECT id, ready FROM server_instances"))
        assert ready.get(healthy.client_id) is True
        assert ready.get(cut_off.client_id) is not True
        assert await healthy.metric("server_instances_live") == 1
        assert cut_off.process is not None
        assert cut_off.process.poll() is None  # still running, still retrying its broker
    finally:
        healthy.kill()
        cut_off.kill()
