"""A hub at rest does not poll: while its LISTEN is up, the dispatcher sweeps the outbox only when told."""

from __future__ import annotations

import asyncio

import databases

from server.dispatch import publisher
from server.dsn import plain
from server.services import consumers, resources
from server.settings import Settings
from tests.integration.dispatch_support import eventually
from tests.integration.test_resync_batching import NGINX, Recorder

PATTERN = "sources/maestro/consumers/+/sourceevents"
WRITES = 5


async def test_a_listening_dispatcher_sweeps_per_notification_not_per_poll(
    database: databases.Database, db_url: str
) -> None:
    await consumers.create(database, {"name": "c1"})
    recorder = Recorder()
    settings = Settings.of(dispatch_poll_interval=0.001)
    dispatcher = publisher.Dispatcher(database, recorder, settings, dsn=plain(db_url), source_events=PATTERN)
    task = asyncio.create_task(dispatcher.run())
    try:

        async def listening() -> bool:
            return dispatcher.listening

        await eventually(listening)
        before = dispatcher.sweeps
        for n in range(1, WRITES + 1):
            await resources.create_bundle(database, {"consumer_name": "c1", "manifests": [NGINX]}, source="maestro")

            async def published(n: int = n) -> bool:
                return len(recorder.sent) == n

            await eventually(published)  # NB: the barrier: a poll every millisecond would sweep many times over
        # NB: each write's NOTIFY, at most a rescan after its publish, and the wake of the listener's own start.
        assert dispatcher.sweeps - before <= 2 * WRITES + 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
