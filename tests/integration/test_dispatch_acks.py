"""A dispatch batch waits once for all its acknowledgements: what is acknowledged in time is marked reconciled, what is
not is retried on its own, against real PostgreSQL."""

from __future__ import annotations

import asyncio

import databases
import pytest

from protocol import cloudevents_mqtt
from protocol.backoff import Backoff
from server.dispatch import metrics, publisher
from server.services import consumers, resources
from server.settings import Settings
from server.store import db as store_db
from tests.integration.dispatch_support import eventually

pytestmark = pytest.mark.timeout(30)


class HeldPublisher:
    """Publishes nothing: each publish returns a future that the test resolves (the PUBACK) when it wants."""

    binary_mode = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, asyncio.Future[None]]] = []
        self.published = asyncio.Event()

    async def publish(
        self, topic: str, message: cloudevents_mqtt.MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        resource_id = cloudevents_mqtt.decode(message).get_extension("resourceid")
        self.sent.append((str(resource_id), future))
        self.published.set()
        return future


async def pending(database: databases.Database) -> set[str]:
    async with store_db.connection(database) as conn:
        rows = await conn.fetch("SELECT source_id FROM events WHERE reconciled_date IS NULL")
    return {r["source_id"] for r in rows}


async def test_an_unacknowledged_publish_is_retried_alone_and_the_rest_of_its_batch_is_reconciled(
    database: databases.Database,
) -> None:
    await consumers.create(database, {"name": "acks"})
    ids = []
    for n in range(3):
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{n}", "namespace": "ns"}}
        created = await resources.create_single(database, {"consumer_name": "acks", "manifest": manifest}, source="s")
        ids.append(created.row.id)
    held = HeldPublisher()
    settings = Settings.of(
        dispatch_poll_interval=0.1,
        dispatch_concurrency=1,
        publish_timeout=0.5,
        publish_backoff=Backoff(min=0.05, max=0.1),
    )
    dispatcher = publisher.Dispatcher(
        database, held, settings, dsn=None, source_events="sources/maestro/consumers/+/sourceevents"
    )
    timeouts = metrics.SPEC_PUBLISH_ERRORS.labels("ack_timeout")._value.get()
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(20):
            while len(held.sent) < 3:
                held.published.clear()
                await held.published.wait()
            assert sorted(r for r, _ in held.sent) == sorted(ids), "one batch publishes all three"
            for resource_id, future in held.sent:
                if resource_id != ids[1]:
                    future.set_result(None)
            while len(held.sent) < 4:  # NB: the one never acknowledged comes again after its timeout and backoff.
                held.published.clear()
                await held.published.wait()
            assert held.sent[3][0] == ids[1]
            assert await pending(database) == {ids[1]}
            assert metrics.SPEC_PUBLISH_ERRORS.labels("ack_timeout")._value.get() == timeouts + 1
            held.sent[3][1].set_result(None)

            async def reconciled() -> bool:
                return not await pending(database)

            await eventually(reconciled)
        assert len(held.sent) == 4
    finally:
        running.cancel()
        await asyncio.wait({running}, timeout=5)
