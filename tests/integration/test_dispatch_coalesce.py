"""The dispatcher coalesces a burst of writes into few sweeps, yet publishes a write after a quiet spell at once."""

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
WINDOW = 0.5
BURST = 20


async def test_a_burst_is_swept_in_few_rounds_and_a_lone_write_without_waiting(
    database: databases.Database, db_url: str
) -> None:
    await consumers.create(database, {"name": "c1"})
    recorder = Recorder()
    settings = Settings.of(dispatch_coalesce=WINDOW)
    dispatcher = publisher.Dispatcher(database, recorder, settings, dsn=plain(db_url), source_events=PATTERN)
    task = asyncio.create_task(dispatcher.run())

    async def published(n: int) -> bool:
        return len(recorder.sent) == n

    try:

        async def swept_listening() -> bool:
            return dispatcher.listening and dispatcher.sweeps >= 1 and not dispatcher.wake.is_set()

        await eventually(swept_listening)
        await asyncio.sleep(WINDOW * 1.5)  # NB: a quiet spell longer than the window
        deferred = dispatcher.deferred
        await resources.create_bundle(database, {"consumer_name": "c1", "manifests": [NGINX]}, source="maestro")
        await eventually(lambda: published(1))
        assert dispatcher.deferred == deferred  # NB: the lone write's sweep did not wait out a window

        before = dispatcher.sweeps
        for _ in range(BURST):
            await resources.create_bundle(database, {"consumer_name": "c1", "manifests": [NGINX]}, source="maestro")
        await eventually(lambda: published(1 + BURST))
        # NB: without coalescing, each write's NOTIFY is a sweep (and a publish round) of its own.
        assert dispatcher.sweeps - before <= BURST // 2
        assert dispatcher.deferred > deferred
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
