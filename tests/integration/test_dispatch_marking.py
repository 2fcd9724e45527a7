"""The marking of published events rides on the dispatcher's next sweep (real PostgreSQL): it happens even when no
write follows, a crash before it publishes again (at-least-once), and a sweep that read while a batch was being
acknowledged does not publish that batch twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import databases
import pytest

from protocol import cloudevents_mqtt
from server.dispatch import publisher
from server.services import consumers, resources
from server.settings import Settings
from server.store import db as store_db
from server.store import outbox
from tests.integration.dispatch_support import eventually
from tests.integration.test_resync_batching import Recorder

pytestmark = pytest.mark.timeout(30)

PATTERN = "sources/maestro/consumers/+/sourceevents"


def dispatcher_of(database: databases.Database, recorder: Recorder) -> publisher.Dispatcher:
    # NB: no LISTEN and no poll: only the test, or the dispatcher itself, wakes the sweeper.
    settings = Settings.of(dispatch_poll_interval=3600, dispatch_coalesce=0, dispatch_concurrency=1)
    return publisher.Dispatcher(database, recorder, settings, dsn=None, source_events=PATTERN)


async def create(database: databases.Database, name: str) -> str:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}
    created = await resources.create_single(database, {"consumer_name": "marks", "manifest": manifest}, source="s")
    return created.row.id


async def pending(database: databases.Database) -> int:
    async with store_db.connection(database) as conn:
        return await outbox.pending_count(conn)


def published(recorder: Recorder) -> list[str]:
    return [str(cloudevents_mqtt.decode(m).get_extension("resourceid")) for _, m in recorder.sent]


def sent(recorder: Recorder, *ids: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return published(recorder) == list(ids)

    return check


async def test_published_events_are_marked_by_the_next_sweep_or_soon_without_one(
    database: databases.Database,
) -> None:
    await consumers.create(database, {"name": "marks"})
    recorder = Recorder()
    dispatcher = dispatcher_of(database, recorder)
    running = asyncio.create_task(dispatcher.run())
    try:
        first = await create(database, "first")
        dispatcher.wake.set()
        await eventually(sent(recorder, first))
        second = await create(database, "second")
        dispatcher.wake.set()
        await eventually(sent(recorder, first, second))

        async def reconciled() -> bool:
            return await pending(database) == 0

        await eventually(reconciled)  # NB: nothing wakes the sweeper but the marking itself.
        assert published(recorder) == [first, second], "each published once"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_crash_before_the_marking_publishes_again(
    database: databases.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher, "MARK_DELAY", 3600.0)
    await consumers.create(database, {"name": "marks"})
    resource = await create(database, "crash")
    recorder = Recorder()
    dispatcher = dispatcher_of(database, recorder)
    running = asyncio.create_task(dispatcher.run())
    dispatcher.wake.set()
    await eventually(sent(recorder, resource))
    running.cancel()  # NB: the hub dies after the acknowledgement, before any sweep marked the events.
    await asyncio.gather(running, return_exceptions=True)
    assert await pending(database) == 1

    again = Recorder()
    restarted = dispatcher_of(database, again)
    running = asyncio.create_task(restarted.run())
    try:
        restarted.wake.set()
        await eventually(sent(again, resource))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_batch_acknowledged_while_a_sweep_reads_is_not_published_again(database: databases.Database) -> None:
    await consumers.create(database, {"name": "marks"})
    resource = await create(database, "race")
    recorder = Recorder()
    dispatcher = dispatcher_of(database, recorder)
    assert await dispatcher.sweep() == 1
    taken = dispatcher._take()
    assert taken is not None
    queue, batch = taken
    read = dispatcher._pending

    async def publish_during_the_read(reconcile: list[int], backlogged: set[str]) -> list[outbox.Dirty]:
        dirty = await read(reconcile, backlogged)  # NB: this read still sees the batch's events pending ...
        outcomes = await dispatcher._publish_batch(queue.name, batch)  # ... and then the batch is acknowledged.
        assert [o.ok for o in outcomes] == [True]
        queue.busy = False
        dispatcher._inflight.clear()
        return dirty

    dispatcher._pending = publish_during_the_read  # type: ignore[method-assign]
    assert await dispatcher.sweep() == 0, "the sweep does not queue what was just published"
    dispatcher._pending = read  # type: ignore[method-assign]
    assert await dispatcher.sweep() == 0
    assert await pending(database) == 0
    assert published(recorder) == [resource]
