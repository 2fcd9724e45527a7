"""Defects of the hub's long-lived loops (issue 9, item 7), each reproduced against real PostgreSQL and Mosquitto.

Each test failed on the code before its fix: it names the symptom, not the repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import databases
import httpx
import pytest

from protocol import cloudevents_mqtt, mqtt, topics
from protocol.backoff import Backoff
from protocol.errors import ConnectError
from server.app import create_app
from server.dispatch import publisher
from server.dispatch.maintenance import Maintenance
from server.http import watch as http_watch
from server.services import consumers, resources, watch
from server.settings import Settings
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.status_support import report

pytestmark = pytest.mark.timeout(30)


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": value},
    }


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
            reconnect=Backoff(min=0.05, max=60.0),
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
            reconnect=Backoff(min=0.05, max=0.2),
        ) as sub,
        mqtt.Broker(config, client_id=mqtt_names.client_id("pub"), reconnect=Backoff(min=0.05, max=0.2)) as pub,
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
        reconnect=Backoff(min=0.05, max=0.1),
        first_connect_timeout=1.0,
    )
    with pytest.raises(ConnectError, match="subscribe exploded") as caught:
        await broker.start()
    assert isinstance(caught.value.__cause__, Boom)


# --- (b) the REST watch cancels a reader that is slow to take a line
# --------------------------------------------------------------------------------------------------------------------


async def test_rest_watch_keeps_a_slow_reader(
    monkeypatch: pytest.MonkeyPatch, db_url: str, database: databases.Database
) -> None:
    monkeypatch.setattr(http_watch, "KEEPALIVE_SECONDS", 0.2)
    await consumers.create(database, {"name": "slow"})
    bundle = (
        await resources.create_bundle(
            database, {"consumer_name": "slow", "manifests": [configmap("cm")]}, source="maestro"
        )
    ).row
    app = create_app(
        Settings.of(db_url=db_url, disable_auth=True), database=database, feed=watch.StatusFeed(poll_interval=0.1)
    )
    lines: list[dict[str, Any]] = []
    got_two = asyncio.Event()
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not hasattr(receive, "sent"):
            receive.sent = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        body = message.get("body", b"").strip()
        if message["type"] == "http.response.body" and body:
            await asyncio.sleep(1.0)  # NB: a reader whose socket takes five keepalive periods to drain one line
            lines.append(json.loads(body))
            if len(lines) == 2:
                got_two.set()

    async with app.router.lifespan_context(app) as state:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/maestro/v1/resource-bundles",
            "raw_path": b"/api/maestro/v1/resource-bundles",
            "root_path": "",
            "query_string": b"watch=true&consumer_name=slow",
            "headers": [(b"host", b"maestro")],
            "client": ("127.0.0.1", 1234),
            "server": ("maestro", 80),
            "state": dict(state),
        }
        serving = asyncio.create_task(app(scope, receive, send))
        try:
            await asyncio.sleep(0.3)
            await report(database, bundle.id, "1")
            await report(database, bundle.id, "2")
            async with asyncio.timeout(10):
                await got_two.wait()
            assert not serving.done()
        finally:
            disconnect.set()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
    assert [line["object"]["status"]["SequenceID"] for line in lines] == ["1", "2"]


# --- (d) a cancellation that arrives just as a publish is acknowledged is swallowed
# --------------------------------------------------------------------------------------------------------------------


class HeldPublisher:
    """Publishes nothing: each publish returns a future that the test resolves (the PUBACK) when it wants."""

    binary_mode = True

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[None]] = []
        self.published = asyncio.Event()

    async def publish(
        self, topic: str, message: cloudevents_mqtt.MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self.published.set()
        return future


async def test_dispatcher_stops_when_cancelled_as_a_publish_is_acknowledged(database: databases.Database) -> None:
    await consumers.create(database, {"name": "acked"})
    await resources.create_single(database, {"consumer_name": "acked", "manifest": configmap("cm")}, source="maestro")
    held = HeldPublisher()
    settings = Settings.of(dispatch_poll_interval=0.1, dispatch_concurrency=1)
    dispatcher = publisher.Dispatcher(
        database, held, settings, dsn=None, source_events="sources/maestro/consumers/+/sourceevents"
    )
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(10):
            await held.published.wait()
        held.futures[0].set_result(None)  # NB: the PUBACK arrives in the same loop iteration as the cancellation.
        running.cancel()
        await asyncio.wait({running}, timeout=5)
        assert running.done(), "the dispatcher went on running after it was cancelled"
        assert running.cancelled()
    finally:
        for task in asyncio.all_tasks():
            if task.get_name().startswith("dispatch:"):
                task.cancel()
        await asyncio.wait({running}, timeout=5)


async def test_dispatcher_retries_a_publish_the_adapter_cancelled(database: databases.Database) -> None:
    await consumers.create(database, {"name": "closing"})
    await resources.create_single(database, {"consumer_name": "closing", "manifest": configmap("cm")}, source="maestro")
    held = HeldPublisher()
    settings = Settings.of(
        dispatch_poll_interval=0.1, dispatch_concurrency=1, publish_backoff=Backoff(min=0.05, max=0.1)
    )
    dispatcher = publisher.Dispatcher(
        database, held, settings, dsn=None, source_events="sources/maestro/consumers/+/sourceevents"
    )
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(10):
            await held.published.wait()
            held.published.clear()
            held.futures[0].cancel()  # NB: what the adapter does to unacknowledged publishes when it closes.
            await held.published.wait()
        assert len(held.futures) == 2
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.wait({running}, timeout=5)
    assert running.cancelled()


# --- (c) maintenance pages are cut before the ownership filter; (e) a SIGTERM waits for a whole round
# --------------------------------------------------------------------------------------------------------------------

HOUR = 3600.0


async def sql(database: databases.Database, query: str, *args: Any) -> list[Any]:
    async with store_db.transaction(database) as conn:
        return list(await conn.fetch(query, *args))


async def bulk_resources(database: databases.Database, consumer: str, count: int, *, deleting: bool) -> None:
    """``count`` rows of ``consumer`` written 20 hours ago (being deleted since then when ``deleting``), no status."""
    await sql(
        database,
        "INSERT INTO resources (id, name, source, consumer_name, type, version, payload, created_at, updated_at,"
        " deleted_at) SELECT $1 || g, $1 || g, 'maestro', $2, 'Single', 1, '{}'::jsonb,"
        " now() - interval '20 hours', now() - interval '20 hours',"
        " CASE WHEN $3 THEN now() - interval '20 hours' END FROM generate_series(1, $4) g",
        f"{consumer}-{'deleting' if deleting else 'live'}-",
        consumer,
        deleting,
        count,
    )


async def test_maintenance_finds_its_consumers_behind_a_full_page_of_others(database: databases.Database) -> None:
    await consumers.create(database, {"name": "mine"})
    await consumers.create(database, {"name": "theirs"})
    live = (
        await resources.create_single(database, {"consumer_name": "mine", "manifest": configmap("a")}, source="maestro")
    ).row
    gone = (
        await resources.create_single(database, {"consumer_name": "mine", "manifest": configmap("b")}, source="maestro")
    ).row
    await resources.mark_deleting(database, gone.id)
    await sql(database, "UPDATE events SET reconciled_date = now(), created_at = now() - interval '11 hours'")
    await sql(
        database,
        "UPDATE resources SET updated_at = now() - interval '11 hours',"
        " deleted_at = deleted_at - interval '11 hours' WHERE consumer_name = 'mine'",
    )
    # NB: older than ours, so they come first in every page; one more than the store's default page.
    await bulk_resources(database, "theirs", 10_001, deleting=False)
    await bulk_resources(database, "theirs", 10_001, deleting=True)
    settings = Settings.of(
        undelivered_resource_threshold=HOUR,
        delete_republish_interval=HOUR,
        stale_delete_event_threshold=10 * HOUR,
        status_event_retention=100 * HOUR,
    )
    repairs = Maintenance(database, settings.maintenance, owns=lambda consumer: consumer == "mine")

    assert await repairs.republish_undelivered() == 1
    assert await repairs.republish_deletes() == 1
    assert await repairs.retire_stale_deletes() == 1
    pending = await sql(database, "SELECT source_id, event_type FROM events WHERE reconciled_date IS NULL ORDER BY id")
    assert [(r["source_id"], r["event_type"]) for r in pending] == [
        (live.id, "Create")
    ]  # NB: retiring reconciled the delete.
    assert await sql(database, "SELECT 1 FROM resources WHERE id = $1", gone.id) == []


async def test_maintenance_stops_within_a_unit_of_work_when_cancelled(database: databases.Database) -> None:
    await consumers.create(database, {"name": "mine"})
    total = 2000
    await bulk_resources(database, "mine", total, deleting=True)
    repairs = Maintenance(
        database, Settings.of(maintenance_interval=0.01, stale_delete_event_threshold=10 * HOUR).maintenance
    )

    async def left() -> int:
        return len(await sql(database, "SELECT 1 FROM resources WHERE deleted_at IS NOT NULL"))

    running = asyncio.create_task(repairs.run())
    try:
        async with asyncio.timeout(10):
            while await left() == total:  # noqa: ASYNC110 - the round's first commit is the barrier
                await asyncio.sleep(0.01)
        running.cancel()
        started = time.monotonic()
        await asyncio.wait({running}, timeout=20)
        stopped_after = time.monotonic() - started
    finally:
        running.cancel()
        await asyncio.wait({running}, timeout=20)
    assert running.cancelled()
    assert stopped_after < 1.0, f"stopping took {stopped_after:.1f}s"
    assert await left() > 0  # NB: the round was not finished first.


# --- dead code: the error classes never raised are gone, their upstream codes stay in the catalog
# --------------------------------------------------------------------------------------------------------------------


async def test_error_catalog_keeps_upstream_codes_never_raised(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/maestro/v1/errors")
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()["items"]}
    assert list(items) == ["1", "4", "6", "7", "8", "9", "10", "11", "15", "17", "21", "23", "26"]
    assert items["26"]["reason"] == "Database advisory lock error"
    assert (await client.get("/api/maestro/v1/errors/11")).json()["code"] == "maestro-11"
