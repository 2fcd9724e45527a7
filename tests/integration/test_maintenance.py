"""The periodic repairs (``server.dispatch.maintenance``) against PostgreSQL.

Time is moved by back-dating rows (``updated_at``, ``created_at``, ``deleted_at``) rather than by sleeping, so the
thresholds can stay realistic and the tests cannot race the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import databases
import pytest

from protocol import cloudevents_mqtt, events, topics, types
from protocol.cloudevents_mqtt import MQTTMessage
from server.dispatch import ingest
from server.dispatch.maintenance import Maintenance
from server.services import consumers, resources
from server.settings import Settings
from server.store import db as store_db

HOUR = 3600.0


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


async def sql(database: databases.Database, query: str, *args: Any) -> list[Any]:
    async with store_db.transaction(database) as conn:
        return list(await conn.fetch(query, *args))


async def create(database: databases.Database, consumer: str, name: str) -> str:
    body = {"consumer_name": consumer, "manifest": configmap(name)}
    return (await resources.create_single(database, body, source="maestro")).row.id


async def publish_all(database: databases.Database) -> None:
    """What the dispatcher does once it has published: mark every pending spec event reconciled."""
    await sql(database, "UPDATE events SET reconciled_date = now() WHERE reconciled_date IS NULL")


async def age(database: databases.Database, seconds: float = 2 * HOUR) -> None:
    """Everything written so far happened ``seconds`` ago."""
    shift = timedelta(seconds=seconds)
    await sql(
        database,
        "UPDATE resources SET updated_at = updated_at - $1::interval, deleted_at = deleted_at - $1::interval",
        shift,
    )
    await sql(database, "UPDATE events SET created_at = created_at - $1::interval", shift)
    await sql(database, "UPDATE status_events SET created_at = created_at - $1::interval", shift)


async def set_status(database: databases.Database, rid: str, observed: int) -> None:
    await sql(
        database,
        "UPDATE resources SET status = $2 WHERE id = $1",
        rid,
        {"ObservedVersion": observed, "SequenceID": "1", "StatusHash": "h", "conditions": [], "resourceStatus": []},
    )


async def pending(database: databases.Database) -> list[tuple[str, str, int]]:
    found = await sql(
        database, "SELECT source_id, event_type, version FROM events WHERE reconciled_date IS NULL ORDER BY id"
    )
    return [(r["source_id"], r["event_type"], r["version"]) for r in found]


def repairs(
    database: databases.Database, *, owns: Callable[[str], bool] | None = None, **overrides: Any
) -> Maintenance:
    settings = Settings.of(
        **{
            "undelivered_resource_threshold": HOUR,
            "delete_republish_interval": HOUR,
            "stale_delete_event_threshold": 10 * HOUR,
            "status_event_retention": 100 * HOUR,
            **overrides,
        }
    )
    return Maintenance(database, settings.maintenance, owns=owns)


@pytest.fixture
async def two_consumers(database: databases.Database) -> tuple[str, str]:
    await consumers.create(database, {"name": "mine"})
    await consumers.create(database, {"name": "theirs"})
    return "mine", "theirs"


async def test_undelivered_resources_are_republished_once_per_threshold(
    database: databases.Database, two_consumers: tuple[str, str]
) -> None:
    consumer, _ = two_consumers
    silent = await create(database, consumer, "silent")  # no status at all
    current = await create(database, consumer, "current")  # status of its version
    behind = await create(database, consumer, "behind")  # status of an older version
    fresh = await create(database, consumer, "fresh")  # no status, but written recently
    await resources.patch_single(database, behind, {"version": 1, "manifest": configmap("behind", "2")})
    await set_status(database, current, 1)
    await set_status(database, behind, 1)
    await publish_all(database)
    await age(database)
    await sql(database, "UPDATE resources SET updated_at = now() WHERE id = $1", fresh)
    maintenance = repairs(database)

    assert await maintenance.republish_undelivered() == 2
    assert await pending(database) == [(silent, "Create", 1), (behind, "Update", 2)]
    # Not again while that event is pending, nor once it is published (it is younger than the threshold).
    assert await maintenance.republish_undelivered() == 0
    await publish_all(database)
    assert await maintenance.republish_undelivered() == 0
    assert await pending(database) == []
    # One threshold later, still no status: once more.
    await age(database)
    await sql(database, "UPDATE resources SET updated_at = now() WHERE id = $1", fresh)
    assert await maintenance.republish_undelivered() == 2
    assert sorted(await pending(database)) == sorted([(silent, "Create", 1), (behind, "Update", 2)])
    # A status for the current version stops it.
    await publish_all(database)
    await age(database)
    await set_status(database, silent, 1)
    await set_status(database, behind, 2)
    await sql(database, "UPDATE resources SET updated_at = now() WHERE id = $1", fresh)
    assert await maintenance.republish_undelivered() == 0


async def test_a_replica_repairs_only_the_consumers_it_owns(
    database: databases.Database, two_consumers: tuple[str, str]
) -> None:
    mine, theirs = two_consumers
    ours = await create(database, mine, "a")
    await create(database, theirs, "b")
    deleting_ours = await create(database, mine, "c")
    deleting_theirs = await create(database, theirs, "d")
    await resources.mark_deleting(database, deleting_ours)
    await resources.mark_deleting(database, deleting_theirs)
    await publish_all(database)
    await age(database, 20 * HOUR)
    maintenance = repairs(database, owns=lambda consumer: consumer == mine, stale_delete_event_threshold=100 * HOUR)

    assert await maintenance.republish_undelivered() == 1
    assert await maintenance.republish_deletes() == 1
    assert await pending(database) == [(ours, "Create", 1), (deleting_ours, "Delete", 1)]
    maintenance.stale_delete_threshold = HOUR
    assert await maintenance.retire_stale_deletes() == 1
    left = {r["id"] for r in await sql(database, "SELECT id FROM resources WHERE deleted_at IS NOT NULL")}
    assert left == {deleting_theirs}


async def test_unconfirmed_deletes_are_republished(
    database: databases.Database, two_consumers: tuple[str, str]
) -> None:
    consumer, _ = two_consumers
    rid = await create(database, consumer, "gone")
    await resources.mark_deleting(database, rid)
    maintenance = repairs(database)

    assert await maintenance.republish_deletes() == 0  # NB: its delete is still pending
    await publish_all(database)
    assert await maintenance.republish_deletes() == 0  # NB: published just now: give the agent time
    await age(database)
    assert await maintenance.republish_deletes() == 1
    assert await pending(database) == [(rid, "Delete", 1)]
    assert await maintenance.republish_deletes() == 0
    assert (await sql(database, "SELECT count(*) FROM resources WHERE id = $1", rid))[0][0] == 1


class RecordingPublisher:
    binary_mode = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, MQTTMessage]] = []

    async def publish(
        self, topic: str, message: MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> Any:
        self.sent.append((topic, message))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_stale_deletes_are_retired_visibly_and_a_returning_agent_is_told_to_delete(
    database: databases.Database, two_consumers: tuple[str, str]
) -> None:
    consumer, _ = two_consumers
    stale = await create(database, consumer, "stale")
    recent = await create(database, consumer, "recent")
    await set_status(database, stale, 1)
    await resources.mark_deleting(database, stale)
    await age(database)
    await resources.mark_deleting(database, recent)
    # NB: the delete of ``stale`` was republished and is pending again: retiring must reconcile that event too.
    await sql(
        database,
        "INSERT INTO events (source_id, consumer_name, event_type, version) VALUES ($1, $2, 'Delete', 1)",
        stale,
        consumer,
    )
    maintenance = repairs(database, stale_delete_event_threshold=HOUR)

    assert await maintenance.retire_stale_deletes() == 1
    assert await maintenance.retire_stale_deletes() == 0
    left = {r["id"] for r in await sql(database, "SELECT id FROM resources")}
    assert left == {recent}
    assert {e[0] for e in await pending(database)} == {recent}  # NB: nothing of the retired one is pending
    final = await sql(
        database,
        "SELECT status_event_type, version, status, payload FROM status_events WHERE resource_id = $1 ORDER BY id",
        stale,
    )
    assert [r["status_event_type"] for r in final] == ["StatusDelete"]
    conditions = final[0]["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [("Deleted", "Unknown", "DeleteRetired")]
    assert final[0]["payload"]["data"]["manifests"][0]["metadata"]["name"] == "stale"

    # The agent that never confirmed comes back and lists the work: the hub tells it to delete it.
    recorder = RecordingPublisher()
    handler = ingest.Ingest(database, recorder, Settings(), source_events="sources/maestro/consumers/+/sourceevents")
    request = events.make_event(
        type=types.manifestbundle_type("spec", types.RESYNC_REQUEST),
        source=f"{consumer}-work-agent",
        data={"resourceVersions": [{"resourceID": stale, "resourceVersion": 1}]},
        extensions={types.EXT_CLUSTER_NAME: consumer, types.EXT_ORIGINAL_SOURCE: ""},
    )
    await handler.spec_resync(consumer, request)
    answers = {
        types.str_extension(e, types.EXT_RESOURCE_ID): e
        for e in (cloudevents_mqtt.decode(message) for _, message in recorder.sent)
    }
    assert {topics.parse(topic).consumer for topic, _ in recorder.sent} == {consumer}
    assert set(answers) == {stale, recent}
    assert types.timestamp_extension(answers[stale], types.EXT_DELETION_TIMESTAMP) is not None
    assert answers[stale].get_data() is None


async def test_retention_prunes_old_reconciled_events_but_the_latest_facts(
    database: databases.Database, two_consumers: tuple[str, str]
) -> None:
    consumer, _ = two_consumers
    old = await create(database, consumer, "old")
    unpublished = await create(database, consumer, "unpublished")
    await sql(database, "UPDATE events SET reconciled_date = now() WHERE source_id = $1", old)
    await sql(
        database,
        "INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name, status_event_type,"
        " version) VALUES ($1, 'maestro', 'Single', $2, 'StatusUpdate', 1)",
        old,
        consumer,
    )
    await age(database, 2 * HOUR)
    recent = await create(database, consumer, "recent")
    await sql(database, "UPDATE events SET reconciled_date = now() WHERE source_id = $1", recent)
    await sql(
        database,
        "INSERT INTO status_events (resource_id, resource_source, resource_type, consumer_name, status_event_type,"
        " version) VALUES ($1, 'maestro', 'Single', $2, 'StatusUpdate', 1)",
        recent,
        consumer,
    )

    await resources.patch_single(database, old, {"version": 1, "manifest": configmap("old", "2")})
    await publish_all(database)  # NB: ...but not the aged Create of "unpublished"
    await sql(database, "UPDATE events SET reconciled_date = NULL WHERE source_id = $1", unpublished)

    # The old resource's Create goes; its latest version (and its only status: its latest) stay, and so does
    # whatever is pending or recent. (tests/integration/test_retention.py covers the rules one by one.)
    assert await repairs(database, status_event_retention=HOUR).prune() == 1
    kept = await sql(database, "SELECT source_id, event_type FROM events ORDER BY id")
    assert [(r["source_id"], r["event_type"]) for r in kept] == [
        (unpublished, "Create"),
        (recent, "Create"),
        (old, "Update"),
    ]
    assert {r["resource_id"] for r in await sql(database, "SELECT resource_id FROM status_events")} == {old, recent}
    assert await repairs(database, status_event_retention=HOUR).prune() == 0
