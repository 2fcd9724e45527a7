"""Replica registry on a real database: heartbeats, a shared view of the live set, takeover."""

from __future__ import annotations

import databases

from server.dispatch.instances import Registry
from server.services import consumers
from server.settings import TransportSettings
from server.store.db import transaction


def replica(name: str, database: databases.Database, heartbeat_interval: float) -> Registry:
    return Registry(database, TransportSettings(client_id=name, heartbeat_interval=heartbeat_interval))


NAMES = [f"cluster-{i}" for i in range(40)]


async def _consumers(db: databases.Database) -> None:
    for name in NAMES:
        await consumers.create(db, {"name": name})


async def test_two_replicas_partition_consumers_and_take_over(database: databases.Database) -> None:
    await _consumers(database)
    a, b = replica("replica-a", database, 1.0), replica("replica-b", database, 1.0)
    await a.beat()
    assert all(a.owns(n) for n in NAMES)  # alone, a owns everything
    assert a.take_gained() == set()  # NB: joining is not a takeover: the resync of its broker link covers it
    await b.beat()
    await a.beat()
    assert a.members == b.members == ("replica-a", "replica-b")
    owned_a = {n for n in NAMES if a.owns(n)}
    owned_b = {n for n in NAMES if b.owns(n)}
    assert owned_a.isdisjoint(owned_b)
    assert owned_a | owned_b == set(NAMES)
    assert owned_a
    assert owned_b
    assert b.take_gained() == set()
    assert a.take_gained() == set()  # NB: a lost consumers to b; it gained none

    # b stops heartbeating (killed): once its heartbeat is older than three intervals, a takes its consumers.
    async with transaction(database) as conn:
        await conn.execute(
            "UPDATE server_instances SET last_heartbeat = now() - interval '1 minute' WHERE id = 'replica-b'"
        )
    await a.beat()
    assert a.members == ("replica-a",)
    assert a.take_gained() == owned_b
    assert all(a.owns(n) for n in NAMES)


async def test_clean_leave_hands_over_at_once(database: databases.Database) -> None:
    await _consumers(database)
    a, b = replica("replica-a", database, 60.0), replica("replica-b", database, 60.0)
    await a.beat()
    await b.beat()
    await a.beat()
    a.take_gained()
    async with transaction(database) as conn:
        await conn.execute("UPDATE server_instances SET ready = false WHERE id = 'replica-b'")
    await a.beat()
    assert a.members == ("replica-a",)
    assert all(a.owns(n) for n in NAMES)
