"""Database outages (issue 9, item 8): a real PostgreSQL of this module's own, stopped and started under traffic.

What a user relies on while PostgreSQL is away and after it is back, with ``maestro server`` as a subprocess:

* every REST call answers 503 in the upstream error body with a reason that names the database, and
  ``/healthcheck`` answers 503; once the database is back the same process answers again (the pool reconnects);
* the hub's log says so once (one WARNING when it goes, one INFO when it is back), not a traceback per request;
* an agent's ``Deleted=True`` that arrives during the outage is stored once the database is back: the resource
  leaves "deleting";
* the dispatcher resumes (a resource created after the outage is delivered);
* a create retried with the same client-chosen id returns the resource it created (200), not a second one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import databases
import httpx
import psycopg
import pytest

from protocol import mqtt, payloads, topics
from protocol.backoff import Backoff
from server import errors, migrate
from server.services.status import StatusReport
from server.settings import Settings
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.fixtures.postgres import Cluster
from tests.integration.dispatch_support import HubProcess, applied, eventually, simulated_agent, write_mqtt_config

UNAVAILABLE_LINE = "database unavailable ("
BACK_LINE = "database available again after"


def configmap(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"v": value},
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL of our own: the session's is shared by every other test, this one goes down."""
    own = Cluster()
    own.start()
    try:
        yield own
    finally:
        own.remove()


@pytest.fixture
def outage_db(cluster: Cluster) -> Iterator[str]:
    """A migrated database on the module's cluster; the cluster is running again when the test ends."""
    name = f"o_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = cluster.server.dsn(name)
    migrate.apply(url)
    try:
        yield url
    finally:
        cluster.start()


@pytest.fixture
async def hub(
    tmp_path: Path, outage_db: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[HubProcess]:
    config = write_mqtt_config(
        tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    process = HubProcess(
        db_url=outage_db,
        mqtt_config_file=config,
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
        # NB: no maintenance re-publish of the delete during the test: the held status is what must complete it.
        args=("--heartbeat-interval", "1", "--delete-republish-interval", "3600", "--maintenance-interval", "0.5"),
    )
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop()


async def read_until(api: httpx.AsyncClient, rid: str, into: collections.Counter[int], calm: asyncio.Event) -> None:
    while not calm.is_set():
        for response in (await api.get("/resources", params={"size": 1}), await api.get(f"/resources/{rid}")):
            into[response.status_code] += 1
        await asyncio.sleep(0.005)


async def watch(api: httpx.AsyncClient, consumer: str, into: list[dict[str, Any]]) -> None:
    params = {"watch": "true", "consumer_name": consumer}
    async with api.stream("GET", "/resource-bundles", params=params, timeout=None) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.strip():
                into.append(json.loads(line))


def deleted_status() -> payloads.ManifestBundleStatus:
    condition = {
        "type": "Deleted",
        "status": "True",
        "reason": "ManifestsDeleted",
        "message": "The manifests are deleted",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-12-07T00:00:00Z",
    }
    return payloads.ManifestBundleStatus(conditions=[condition], resourceStatus=[])


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert (body["kind"], body["code"]) == ("Error", "maestro-9"), body
    assert "database is unavailable" in body["reason"], body
    assert response.headers["Retry-After"] == "1"


async def test_rest_503_one_log_line_held_delete_and_recovery(
    hub: HubProcess, cluster: Cluster, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    consumer = mqtt_names.consumer
    config = mosquitto.config(source=mqtt_names.source, consumer=consumer)
    agent = simulated_agent(config, source=mqtt_names.source, consumer=consumer, client_id=mqtt_names.client_id("a"))
    async with agent, httpx.AsyncClient(base_url=hub.api, timeout=30) as api:
        assert (await api.post("/consumers", json={"name": consumer})).status_code == 201
        watched: list[dict[str, Any]] = []
        watcher = asyncio.create_task(watch(api, consumer, watched))
        doomed = (await api.post("/resources", json={"consumer_name": consumer, "manifest": configmap("a")})).json()
        await agent.wait_until(lambda: 1 in applied(agent, doomed["id"]), timeout=30)

        # The agent removes the work but its Deleted=True is not sent until the database is down.
        agent.report_status = False
        assert (await api.delete(f"/resources/{doomed['id']}")).status_code == 204
        await agent.wait_until(lambda: agent.history[doomed["id"]].deletes >= 1, timeout=30)

        # Reads keep arriving from four clients while PostgreSQL stops and starts: never a 500.
        background: collections.Counter[int] = collections.Counter()
        calm = asyncio.Event()
        readers = [asyncio.create_task(read_until(api, doomed["id"], background, calm)) for _ in range(4)]
        await asyncio.to_thread(cluster.stop)
        retried = {"id": str(uuid.uuid4()), "consumer_name": consumer, "manifest": configmap("b")}
        failed = 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.health}") as health:
            for _ in range(10):
                for response in (
                    await api.get("/resources"),
                    await api.get(f"/resources/{doomed['id']}"),
                    await api.get("/consumers"),
                    await api.get("/resource-bundles", params={"search": f"consumer_name = '{consumer}'"}),
                    await api.post("/resources", json=retried),
                    await api.patch(f"/resources/{doomed['id']}", json={"version": 0, "manifest": configmap("a")}),
                    await api.delete(f"/resources/{doomed['id']}"),
                ):
                    assert_unavailable(response)
                    failed += 1
                unready = await health.get("/healthcheck")
                assert unready.status_code == 503
                assert unready.json() == {"status": "not ready", "reason": "database unavailable"}

            # The agent's Deleted=True arrives while the database is down: the hub holds it.
            await agent.link.publish_status(
                resource_id=doomed["id"], version=1, source=mqtt_names.source, status=deleted_status()
            )

            async def held() -> bool:
                return await hub.metric("maestro_status_held") == 1

            await eventually(held, timeout=30)

            await asyncio.to_thread(cluster.start)
            await hub.wait_ready(timeout=60)

        # Back without a restart: the held delete completed, the dispatcher delivers again.
        async def gone() -> bool:
            return (await api.get(f"/resources/{doomed['id']}")).status_code == 404

        await eventually(gone, timeout=60)
        calm.set()
        await asyncio.gather(*readers)
        assert set(background) <= {200, 404, 503}, background
        assert background[503] > 0, background

        # A status watch opened before the outage waited it out and reports the delete.
        async def reported() -> bool:
            return any(e["type"] == "StatusDelete" and e["object"]["id"] == doomed["id"] for e in watched)

        await eventually(reported, timeout=30)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

        agent.report_status = True
        # The create whose 503 the client saw is retried with the same id; its repeat returns the same resource.
        first = await api.post("/resources", json=retried)
        assert first.status_code == 201, first.text
        again = await api.post("/resources", json=retried)
        assert again.status_code == 200, again.text
        assert (again.json()["id"], again.json()["version"]) == (retried["id"], 1)
        await agent.wait_until(lambda: 1 in applied(agent, retried["id"]), timeout=30)
        listed = (await api.get("/resources", params={"search": f"consumer_name = '{consumer}'"})).json()
        assert [item["id"] for item in listed["items"]] == [retried["id"]]

    assert hub.stop() == 0
    log = hub.output()
    assert failed == 70
    assert log.count(UNAVAILABLE_LINE) == 1, log
    assert log.count(BACK_LINE) == 1, log
    assert "Traceback" not in log, log
    assert "Unspecified error" not in log, log
    assert "failed to handle agent event" not in log, log
    assert "maintenance round failed" not in log, log
    assert "dispatch sweep failed" not in log, log


# -- in-process: the REST app and the status ingest over a database that goes away -----------------------------


@pytest.fixture
async def outage_database(outage_db: str) -> AsyncIterator[databases.Database]:
    db = store_db.database(outage_db, max_size=5)
    await db.connect()
    try:
        yield db
    finally:
        await db.disconnect()


async def test_one_warning_per_outage_and_one_info_when_back(
    cluster: Cluster, outage_database: databases.Database, caplog: pytest.LogCaptureFixture
) -> None:
    async def select_one() -> int:
        async with store_db.connection(outage_database) as conn:
            return int(await conn.fetchval("SELECT 1"))

    assert await select_one() == 1
    caplog.set_level("DEBUG", logger="server.store.availability")
    await asyncio.to_thread(cluster.stop)
    for _ in range(25):
        with pytest.raises(errors.DatabaseUnavailable):
            await select_one()
    await asyncio.to_thread(cluster.start)
    assert await select_one() == 1
    assert await select_one() == 1
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "server.store.availability"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "25 operations failed" in lines[1][1]


async def test_a_status_held_through_an_outage_is_stored_when_the_database_is_back(
    cluster: Cluster, outage_database: databases.Database
) -> None:
    """Ingest alone: the held ``Deleted=True`` completes the delete once the retries reach the database."""
    from server.dispatch import ingest
    from server.services import consumers, resources

    await consumers.create(outage_database, {"name": "c1"})
    created = await resources.create_single(
        outage_database, {"consumer_name": "c1", "manifest": configmap("a")}, source="s"
    )
    assert await resources.mark_deleting(outage_database, created.row.id)
    settings = Settings.of(source_id="s", ingest_retry=Backoff(min=0.05, max=0.2))
    hub = ingest.Ingest(outage_database, _NoPublisher(), settings, source_events="x")
    report = StatusReport(
        consumer="c1",
        resource_id=created.row.id,
        version=1,
        sequence_id="1",
        status_hash="h",
        conditions=[{"type": "Deleted", "status": "True"}],
        resource_status=[],
        cluster_name="c1",
        original_source="s",
    )
    await asyncio.to_thread(cluster.stop)
    retries = asyncio.create_task(hub.retry_held())
    try:
        with pytest.raises(errors.DatabaseUnavailable):
            await hub.store_status(report)
        hub.hold(report)
        await asyncio.sleep(0.5)  # NB: a few retries fail meanwhile; they must keep it.
        assert list(hub.held) == [created.row.id]
        await asyncio.to_thread(cluster.start)

        async def stored() -> bool:
            return not hub.held

        await eventually(stored, timeout=30)
    finally:
        retries.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retries
    with pytest.raises(errors.NotFound):
        await resources.get(outage_database, created.row.id)


class _NoPublisher:
    binary_mode = True

    async def publish(self, topic: str, message: Any, *, qos: int | None = None, timeout: float | None = None) -> Any:
        raise AssertionError("nothing is published here")


async def test_an_agent_spec_resync_during_an_outage_is_answered_when_the_database_is_back(
    cluster: Cluster, outage_database: databases.Database, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> None:
    """An agent that (re)connects while PostgreSQL is down asks for its specs once: the answer must come later."""
    from server.dispatch import ingest
    from server.services import consumers, resources

    source, consumer = mqtt_names.source, mqtt_names.consumer
    await consumers.create(outage_database, {"name": consumer})
    rid = (
        await resources.create_single(
            outage_database, {"consumer_name": consumer, "manifest": configmap("a")}, source=source
        )
    ).row.id
    broker = mqtt.Broker(
        mosquitto.config(source=source),
        client_id=mqtt_names.client_id("hub"),
        subscriptions=[topics.server_subscription(source)],
    )
    await broker.start()
    pattern = f"sources/{source}/consumers/+/sourceevents"
    settings = Settings.of(source_id=source, ingest_retry=Backoff(min=0.05, max=0.5))
    hub = ingest.Ingest(outage_database, broker, settings, source_events=pattern)
    running = asyncio.create_task(hub.run(broker.messages()))
    config = mosquitto.config(source=source, consumer=consumer)
    agent = simulated_agent(config, source=source, consumer=consumer, client_id=mqtt_names.client_id("a"))
    try:
        await asyncio.to_thread(cluster.stop)
        async with agent:  # NB: no dispatcher runs: only the answer to this spec resync can bring the resource.

            async def held() -> bool:
                return consumer in hub.held_resyncs

            await eventually(held, timeout=30)
            assert applied(agent, rid) == []
            await asyncio.to_thread(cluster.start)
            await agent.wait_until(lambda: 1 in applied(agent, rid), timeout=30)
        assert hub.held_resyncs == {}
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await broker.close()


class _Recorder:
    binary_mode = True

    def __init__(self) -> None:
        self.topics: list[str] = []

    async def publish(self, topic: str, message: Any, *, qos: int | None = None, timeout: float | None = None) -> Any:
        self.topics.append(topic)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_statuses_let_go_over_the_limit_get_their_consumer_a_status_resync(
    outage_database: databases.Database,
) -> None:
    """Past the hold limit the oldest held status is let go; its consumer is asked to resend once statuses store."""
    from server.dispatch import ingest
    from server.services import consumers, resources

    rows = {}
    for name in ("c1", "c2"):
        await consumers.create(outage_database, {"name": name})
        body = {"consumer_name": name, "manifest": configmap("a")}
        rows[name] = (await resources.create_single(outage_database, body, source="s")).row
    published = _Recorder()
    settings = Settings.of(source_id="s", ingest_hold_limit=1)
    hub = ingest.Ingest(outage_database, published, settings, source_events="sources/s/consumers/+/sourceevents")

    def report(consumer: str) -> StatusReport:
        return StatusReport(
            consumer=consumer,
            resource_id=rows[consumer].id,
            version=1,
            sequence_id="1",
            status_hash=f"h-{consumer}",
            conditions=[{"type": "Applied", "status": "True"}],
            resource_status=[],
            cluster_name=consumer,
            original_source="s",
        )

    hub.hold(report("c1"))
    hub.hold(report("c2"))  # over the limit of one: c1's is let go
    assert list(hub.held) == [rows["c2"].id]
    assert await hub._store_held()
    assert hub.held == {}
    assert (await resources.get(outage_database, rows["c2"].id)).status is not None
    assert (await resources.get(outage_database, rows["c1"].id)).status is None
    assert published.topics == ["sources/s/consumers/c1/sourceevents"]
