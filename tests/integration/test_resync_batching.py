"""Status resync requests stay under the configured packet limit, however many resources a consumer has."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import databases

from protocol import cloudevents_mqtt, events
from protocol.backoff import Backoff
from protocol.cloudevents_mqtt import MQTTMessage
from protocol.errors import NotConnectedError
from server.dispatch import resync
from server.services import consumers, resources
from server.settings import Settings
from tests.integration.dispatch_support import eventually

NGINX = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"}}


class Recorder:
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


async def test_status_resync_is_batched_under_the_limit(database: databases.Database) -> None:
    await consumers.create(database, {"name": "cluster1"})
    created = [
        (
            await resources.create_bundle(
                database, {"consumer_name": "cluster1", "manifests": [NGINX]}, source="maestro"
            )
        ).row.id
        for _ in range(120)
    ]
    recorder = Recorder()
    sent = await resync.status_resync(
        database,
        recorder,
        source_id="maestro",
        source_events="sources/maestro/consumers/+/sourceevents",
        max_bytes=2048,
    )
    assert sent == len(recorder.sent) > 1
    asked: list[str] = []
    for topic, message in recorder.sent:
        assert topic == "sources/maestro/consumers/cluster1/sourceevents"
        data = events.data_object(cloudevents_mqtt.decode(message))
        assert len(json.dumps(data, separators=(",", ":"))) <= 2048
        asked += [h["resourceID"] for h in data["statusHashes"]]
    assert sorted(asked) == sorted(created)  # every resource asked about exactly once


async def test_status_resync_walks_owned_consumers_with_resources_page_by_page(database: databases.Database) -> None:
    names = [f"c{n:02d}" for n in range(23)]
    for name in [*names, "empty"]:
        await consumers.create(database, {"name": name})
    for name in names:
        await resources.create_bundle(database, {"consumer_name": name, "manifests": [NGINX]}, source="maestro")
    pattern = "sources/maestro/consumers/+/sourceevents"
    odd = {n for n in names if int(n[1:]) % 2}
    for wanted in (None, [*sorted(odd), "empty", "unknown"]):
        recorder = Recorder()
        await resync.status_resync(
            database, recorder, source_id="maestro", source_events=pattern, consumers=wanted, page=5
        )
        asked = [topic.split("/")[3] for topic, _ in recorder.sent]
        # NB: one request each, in order; a consumer without resources is not asked (an empty list = "send all")
        assert asked == sorted(odd if wanted else names)
    recorder = Recorder()
    await resync.status_resync(
        database, recorder, source_id="maestro", source_events=pattern, owns=lambda n: n in odd, page=5
    )
    assert [topic.split("/")[3] for topic, _ in recorder.sent] == sorted(odd)


class FailingOnce(Recorder):
    """The broker refuses the first publish (as when the link drops mid-resync), then takes everything."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = False

    async def publish(
        self, topic: str, message: MQTTMessage, *, qos: int | None = None, timeout: float | None = None
    ) -> Any:
        if not self.refused:
            self.refused = True
            raise NotConnectedError("link lost")
        return await super().publish(topic, message, qos=qos, timeout=timeout)


async def test_a_failed_resync_is_retried_and_requests_coalesce(database: databases.Database) -> None:
    for name in ("a", "b"):
        await consumers.create(database, {"name": name})
        await resources.create_bundle(database, {"consumer_name": name, "manifests": [NGINX]}, source="maestro")
    recorder = FailingOnce()
    settings = Settings.of(resync_backoff=Backoff(min=0.01, max=0.01))
    resyncs = resync.Resyncs(database, recorder, settings, source_events="sources/maestro/consumers/+/sourceevents")
    resyncs.taken_over(["a"])
    resyncs.taken_over(["a", "b"])  # NB: before the sender ran: one round for both
    task = asyncio.create_task(resyncs.run())

    async def both_asked() -> bool:
        return len(recorder.sent) == 2

    try:
        await eventually(both_asked)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert recorder.refused
    assert sorted(topic.split("/")[3] for topic, _ in recorder.sent) == ["a", "b"]
