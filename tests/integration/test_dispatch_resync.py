"""Agents that were away: spec resync brings them to the hub's state, status resync brings the hub to theirs."""

from __future__ import annotations

from typing import Any

import databases

from agent.simulator import SimulatedAgent
from server.dsn import plain
from server.services import consumers, resources
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import Hub, applied, eventually, simulated_agent


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": value},
    }


def clean_agent(mosquitto: MosquittoServer, names: MQTTNames, consumer: str) -> SimulatedAgent:
    """An agent with a clean session: whatever is published while it is away is lost, only resync can help."""
    config = mosquitto.config(source=names.source, consumer=consumer, session_expiry=0)
    client_id = names.client_id(f"agent-{consumer}")
    return simulated_agent(config, source=names.source, consumer=consumer, client_id=client_id)


async def rows(database: databases.Database) -> dict[str, Any]:
    async with store_db.connection(database) as conn:
        found = await conn.fetch("SELECT id, version, status FROM resources")
    return {r["id"]: r for r in found}


async def test_agent_offline_converges_on_reconnect(
    hub: Hub, database: databases.Database, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = "cluster-off"
    await consumers.create(database, {"name": consumer})
    agent = clean_agent(mosquitto, mqtt_names, consumer)
    await agent.start()
    try:
        ids = []
        for n in range(4):
            body = {"consumer_name": consumer, "manifest": configmap(f"cm{n}")}
            ids.append((await resources.create_single(database, body, source=mqtt_names.source)).row.id)
        r_update, r_delete, r_vanish, r_keep = ids
        await agent.wait_until(lambda: {rid for rid, h in agent.history.items() if h.applied} == set(ids), timeout=20)
    finally:
        await agent.stop()

    # While the agent is away: an update (two, in fact), a delete, a create, and a resource the hub forgets.
    for value in ("2", "3"):
        await resources.patch_single(database, r_update, {"version": 0, "manifest": configmap("cm0", value)})
    assert await resources.mark_deleting(database, r_delete)
    body = {"consumer_name": consumer, "manifest": configmap("cm-new")}
    r_new = (await resources.create_single(database, body, source=mqtt_names.source)).row.id
    async with store_db.transaction(database) as conn:
        await conn.execute("DELETE FROM resources WHERE id = $1", r_vanish)

    async def published_all() -> bool:
        async with store_db.connection(database) as conn:
            return not await conn.fetchval("SELECT count(*) FROM events WHERE reconciled_date IS NULL")

    await eventually(published_all)
    assert agent.works[r_update].version == 1

    await agent.start()  # NB: the same agent state, a new (clean) MQTT session: it asks for a spec resync.
    try:
        await agent.wait_until(lambda: set(agent.works) == {r_update, r_keep, r_new}, timeout=20)
        assert agent.works[r_update].version == 3
        assert agent.works[r_update].bundle["manifests"][0]["data"] == {"v": "3"}
        assert agent.counters.stale == 0
        assert 2 not in applied(agent, r_update)  # NB: the current state is sent, not the history.

        async def converged() -> bool:
            found = await rows(database)
            return (
                set(found) == {r_update, r_keep, r_new}
                and found[r_update]["status"] is not None
                and found[r_update]["status"]["ObservedVersion"] == 3
                and found[r_new]["status"] is not None
            )

        await eventually(converged)
        async with store_db.connection(database) as conn:
            kinds = await conn.fetch(
                "SELECT status_event_type FROM status_events WHERE resource_id = $1 ORDER BY id", r_delete
            )
        assert [k["status_event_type"] for k in kinds][-1] == "StatusDelete"
        assert agent.history[r_vanish].deletes > 0
    finally:
        await agent.stop()


async def test_resync_deletes_stale_works_when_the_consumer_has_no_resources(
    hub: Hub, database: databases.Database, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = "cluster-empty"
    await consumers.create(database, {"name": consumer})
    agent = clean_agent(mosquitto, mqtt_names, consumer)
    agent.restore(resource_id="5f0c8a52-0000-4000-8000-000000000001", version=7)
    await agent.start()
    try:
        await agent.wait_until(lambda: not agent.works, timeout=20)
        assert {rid: h.deletes for rid, h in agent.history.items()} == {"5f0c8a52-0000-4000-8000-000000000001": 1}
    finally:
        await agent.stop()


async def test_hub_reconnect_asks_agents_for_status(
    database: databases.Database, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    """The hub misses a status while it is away; its status resync on reconnect makes the agent re-send it."""
    consumer = "cluster-st"
    await consumers.create(database, {"name": consumer})
    config = mosquitto.config(source=mqtt_names.source, session_expiry=0)
    hub = Hub(database, config, source=mqtt_names.source, client_id=mqtt_names.client_id("hub"), dsn=plain(db_url))
    agent = clean_agent(mosquitto, mqtt_names, consumer)
    agent.report_status = False  # NB: the statuses of this first apply are "lost".
    await agent.start()
    await hub.start()
    try:
        body = {"consumer_name": consumer, "manifest": configmap("cm")}
        rid = (await resources.create_single(database, body, source=mqtt_names.source)).row.id
        await agent.wait_until(lambda: 1 in applied(agent, rid), timeout=20)
        assert (await rows(database))[rid]["status"] is None
        agent.report_status = True
        await hub.stop()
        hub = Hub(database, config, source=mqtt_names.source, client_id=mqtt_names.client_id("hub"), dsn=plain(db_url))
        await hub.start()

        async def has_status() -> bool:
            return (await rows(database))[rid]["status"] is not None

        await eventually(has_status)
        assert agent.counters.status_resyncs_answered >= 1
    finally:
        await hub.stop()
        await agent.stop()
