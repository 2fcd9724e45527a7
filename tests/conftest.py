"""Shared pytest plugins (real PostgreSQL and Mosquitto servers started once per session) and the test hygiene
every test gets: a per-test timeout (``pyproject.toml``; e2e tests set their own) and a check that a test leaves
no asyncio task running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.mosquitto"]

# A task still finishing its cancellation when the test returns gets this long to end on its own.
LEFTOVER_GRACE = 2.0


@pytest.fixture(autouse=True)
async def no_task_left_running(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail a test that leaves a task of its own running on the shared event loop (a task started by the test or
    one of its function-scoped fixtures and never awaited or cancelled). Tasks of wider-scoped fixtures exist
    before this fixture starts and are not counted."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leftover = {t for t in asyncio.all_tasks() - before if t is not current and not t.done()}
    if not leftover:
        return
    await asyncio.wait(leftover, timeout=LEFTOVER_GRACE)
    running = sorted((t for t in leftover if not t.done()), key=lambda t: t.get_name())
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running, timeout=LEFTOVER_GRACE)
        names = ", ".join(f"{t.get_name()} ({t.get_coro()!r})" for t in running)
        pytest.fail(f"{request.node.nodeid} left {len(running)} task(s) running: {names}", pytrace=False)


# Unit and integration tests get pyproject's 30 s; an e2e test (a real control plane, agents, Helm) gets this much
# unless it sets its own.
E2E_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None and "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))
