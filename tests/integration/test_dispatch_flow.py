"""The transport end to end: service-layer writes → dispatcher → mosquitto → agent → status ingest → database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import databases
from cloudevents.core.v1.event import CloudEvent

from agent.simulator import SimulatedAgent
from protocol import types
from server.dsn import plain
from server.services import consumers, resources
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import Hub, applied, eventually, simulated_agent


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"v": value},
    }


async def create(database: databases.Database, consumer: str, name: str, *, source: str) -> str:
    body = {"consumer_name": consumer, "manifest": configmap(name)}
    return (await resources.create_single(database, body, source=source)).row.id


async def update(database: databases.Database, rid: str, value: str) -> None:
    row = await resources.get(database, rid)
    await resources.patch_single(
        database,
        rid,
        {"version": row.version, "manifest": configmap(row.payload["data"]["manifests"][0]["metadata"]["name"], value)},
    )


async def fetch(database: databases.Database, sql: str, *args: Any) -> list[Any]:
    async with store_db.connection(database) as conn:
        return await conn.fetch(sql, *args)


def agent_for(
    mosquitto: MosquittoServer, names: MQTTNames, consumer: str, *, received: list[CloudEvent], **overrides: Any
) -> SimulatedAgent:
    """An agent that appends every event it receives to ``received``."""
    config = mosquitto.config(source=names.source, consumer=consumer, **overrides)
    client_id = names.client_id(f"agent-{consumer}")
    return simulated_agent(
        config, source=names.source, consumer=consumer, client_id=client_id, on_event=received.append
    )


async def status_of(database: databases.Database, rid: str) -> dict[str, Any] | None:
    rows = await fetch(database, "SELECT status FROM resources WHERE id = $1", rid)
    return rows[0]["status"] if rows else None


async def test_create_update_delete_round_trip(
    hub: Hub, database: databases.Database, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = "cluster-a"
    await consumers.create(database, {"name": consumer})
    received: list[CloudEvent] = []
    agent = agent_for(mosquitto, mqtt_names, consumer, received=received)
    await agent.start()
    try:
        await eventually(hub.resynced)  # NB: else the create may reach the agent as the answer to its resync.
        rid = await create(database, consumer, "cm1", source=mqtt_names.source)
        await agent.wait_until(lambda: 1 in applied(agent, rid), timeout=20)
        create_event = next(e for e in received if e.get_extension("resourceid") == rid)
        assert create_event.get_type().endswith("spec.create_request")
        assert create_event.get_source() == mqtt_names.source
        assert create_event.get_extension("clustername") == consumer
        assert create_event.get_data()["manifests"][0]["metadata"]["name"] == "cm1"
        assert set(create_event.get_data()) == {"manifests", "deleteOption", "manifestConfigs"}
        meta = json.loads(create_event.get_extension("metadata"))
        assert (meta["name"], meta["uid"], meta["namespace"], meta["generation"]) == (rid, rid, consumer, 1)
        assert meta["resourceVersion"] == "1"
        assert meta["creationTimestamp"].endswith("Z")

        async def stored_v1() -> bool:
            status = await status_of(database, rid)
            return bool(status) and status["ObservedVersion"] == 1

        await eventually(stored_v1)
        status = await status_of(database, rid)
        assert status is not None
        assert status["conditions"][0]["type"] == "Applied"
        assert status["SequenceID"]
        assert status["StatusHash"]

        await update(database, rid, "2")
        await agent.wait_until(lambda: 2 in applied(agent, rid), timeout=20)
        assert agent.works[rid].bundle["manifests"][0]["data"] == {"v": "2"}

        async def stored_v2() -> bool:
            status = await status_of(database, rid)
            return bool(status) and status["ObservedVersion"] == 2

        await eventually(stored_v2)

        assert await resources.mark_deleting(database, rid)
        await agent.wait_until(lambda: agent.history[rid].deletes > 0, timeout=20)

        async def gone() -> bool:
            return not await fetch(database, "SELECT 1 FROM resources WHERE id = $1", rid)

        await eventually(gone)
        kinds = [
            r["status_event_type"]
            for r in await fetch(
                database, "SELECT status_event_type FROM status_events WHERE resource_id = $1 ORDER BY id", rid
            )
        ]
        assert kinds == ["StatusUpdate", "StatusUpdate", "StatusDelete"]
        [delete_row] = await fetch(
            database,
            "SELECT payload, status FROM status_events WHERE resource_id = $1 AND status_event_type = 'StatusDelete'",
            rid,
        )
        assert delete_row["payload"]["data"]["manifests"][0]["metadata"]["name"] == "cm1"
        assert delete_row["status"]["conditions"][0]["type"] == "Deleted"
        delete_event = received[-1]
        assert delete_event.get_type().endswith("spec.delete_request")
        assert delete_event.get_extension("deletiontimestamp") is not None
        assert delete_event.get_data() is None  # NB: as sdk-go's source codec: a deleting work has no spec
        assert "deletionTimestamp" in json.loads(delete_event.get_extension("metadata"))
        pending = await fetch(database, "SELECT id FROM events WHERE reconciled_date IS NULL")
        assert pending == []
    finally:
        await agent.stop()


async def test_three_updates_before_a_publish_become_one_message(
    database: databases.Database, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = "cluster-b"
    await consumers.create(database, {"name": consumer})
    hub = Hub(
        database,
        mosquitto.config(source=mqtt_names.source),
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        dsn=plain(db_url),
    )
    received: list[CloudEvent] = []
    agent = agent_for(mosquitto, mqtt_names, consumer, received=received)
    await agent.start()
    await hub.start(dispatch=False)
    try:
        rid = await create(database, consumer, "cm1", source=mqtt_names.source)
        for value in ("2", "3", "4"):
            await update(database, rid, value)
        hub.start_dispatcher()
        await agent.wait_until(lambda: 4 in applied(agent, rid), timeout=20)
        await asyncio.sleep(0.3)
        specs = [e for e in received if types.event_type(e).subresource == "spec"]
        assert [(e.get_type().rsplit(".", 1)[1], e.get_extension("resourceversion")) for e in specs] == [
            ("update_request", 4)
        ]
    finally:
        await hub.stop()
        await agent.stop()
