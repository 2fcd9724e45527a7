"""Guarded tasks: a crash is logged with the task's name, an essential task's end is recorded, stop() bounds."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server import tasks


async def _forever() -> None:
    await asyncio.Event().wait()


async def _fail() -> None:
    raise RuntimeError("boom")


async def test_a_crash_is_logged_with_its_name_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    crashed = tasks.Crashed()
    task = tasks.create_guarded_task(_fail(), name="ingest", crashed=crashed)
    await asyncio.wait_for(crashed.wait(), 1)
    assert crashed.names == ["ingest"]
    assert task.done()
    [record] = [r for r in caplog.records if r.name == "server.tasks"]
    assert record.levelno == logging.ERROR
    assert "task ingest crashed: RuntimeError('boom')" in record.getMessage()
    assert record.exc_info is not None


async def test_an_essential_task_that_returns_is_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    crashed = tasks.Crashed()
    tasks.create_guarded_task(asyncio.sleep(0), name="listener", crashed=crashed)
    await asyncio.wait_for(crashed.wait(), 1)
    assert crashed.names == ["listener"]
    assert "task listener ended on its own" in caplog.text


async def test_cancellation_is_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    crashed = tasks.Crashed()
    task = tasks.create_guarded_task(_forever(), name="heartbeat", crashed=crashed)
    await tasks.stop([task], timeout=1)
    assert task.cancelled()
    assert not crashed
    assert caplog.records == []


async def test_a_non_essential_task_may_end_quietly_but_not_crash_quietly(caplog: pytest.LogCaptureFixture) -> None:
    done = tasks.create_guarded_task(asyncio.sleep(0), name="one-shot")
    failed = tasks.create_guarded_task(_fail(), name="helper")
    await asyncio.wait([done, failed])
    await asyncio.sleep(0)  # the done callbacks
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["task helper crashed"]


async def test_stop_waits_at_most_its_timeout_and_names_the_stuck(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop

    polite = tasks.create_guarded_task(_forever(), name="polite")
    rude = tasks.create_guarded_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    try:
        await tasks.stop([polite, rude], timeout=0.1)
        assert polite.cancelled()
        assert not rude.done()
        assert "1 task(s) did not stop within 0.1s: stubborn" in caplog.text
    finally:
        release.set()
        await rude


async def test_an_essential_task_may_return_once_the_process_is_closing(caplog: pytest.LogCaptureFixture) -> None:
    crashed = tasks.Crashed()
    crashed.closing = True
    await tasks.create_guarded_task(asyncio.sleep(0), name="uvicorn:REST", crashed=crashed)
    assert not crashed
    assert caplog.records == []
