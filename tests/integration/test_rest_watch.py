"""REST status watch: a stream of status changes that a client resumes from its last cursor."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import databases
import httpx
import pytest
import uvicorn

from server import dsn
from server.app import create_app
from server.dispatch.listen import listen
from server.services import consumers, resources, watch
from server.settings import Settings
from tests.fixtures.postgres import free_port
from tests.integration.status_support import report

NGINX = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"}}


@pytest.fixture
async def base_url(db_url: str, database: databases.Database) -> AsyncIterator[str]:
    settings = Settings.of(db_url=db_url, disable_auth=True)
    feed = watch.StatusFeed(poll_interval=settings.dispatch.dispatch_poll_interval)
    tasks = [
        asyncio.create_task(feed.run()),
        asyncio.create_task(listen(dsn.plain(db_url), "status_events", feed.wake, settings.database)),
    ]
    port = free_port()
    app = create_app(settings, database=database, feed=feed)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}/api/maestro/v1"
    server.should_exit = True
    await serving
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def read_lines(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        async for line in response.aiter_lines():
            if line.strip():
                out.append(json.loads(line))
                if len(out) == count:
                    return out
    return out


async def test_watch_streams_status_and_resumes(base_url: str, database: databases.Database) -> None:
    await consumers.create(database, {"name": "cluster1"})
    await consumers.create(database, {"name": "cluster2"})
    one = (
        await resources.create_bundle(database, {"consumer_name": "cluster1", "manifests": [NGINX]}, source="maestro")
    ).row
    other = (
        await resources.create_bundle(database, {"consumer_name": "cluster2", "manifests": [NGINX]}, source="maestro")
    ).row
    async with httpx.AsyncClient(timeout=15) as client:
        async with client.stream(
            "GET", f"{base_url}/resource-bundles", params={"watch": "true", "consumer_name": "cluster1"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            await asyncio.sleep(0.3)
            await report(database, other.id, "1")  # another consumer: filtered out
            await report(database, one.id, "1")
            (first,) = await read_lines(response, 1)
        assert first["type"] == "StatusUpdate"
        assert first["object"]["id"] == one.id
        assert first["object"]["status"]["SequenceID"] == "1"
        assert first["object"]["manifests"] == [NGINX]

        await report(database, one.id, "2")  # while the client is away
        await report(database, one.id, "3", deleted=True)
        async with client.stream(
            "GET", f"{base_url}/resource-bundles", params={"watch": "true", "cursor": first["cursor"]}
        ) as resumed:
            got = await read_lines(resumed, 2)
        assert [(g["type"], g["object"]["status"]["SequenceID"]) for g in got] == [
            ("StatusUpdate", "2"),
            ("StatusDelete", "3"),
        ]

        bad = await client.get(f"{base_url}/resource-bundles", params={"watch": "true", "cursor": "x"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "maestro-21"


async def test_watch_as_server_sent_events(base_url: str, database: databases.Database) -> None:
    await consumers.create(database, {"name": "cluster1"})
    row = (
        await resources.create_bundle(database, {"consumer_name": "cluster1", "manifests": [NGINX]}, source="s1")
    ).row
    async with (
        httpx.AsyncClient(timeout=15) as client,
        client.stream(
            "GET",
            f"{base_url}/resource-bundles",
            params={"watch": "true", "source": "s1"},
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        await asyncio.sleep(0.3)
        await report(database, row.id, "9")
        async with asyncio.timeout(10):
            lines = response.aiter_lines()
            event_id = await anext(lines)
            data = await anext(lines)
    assert event_id.startswith("id: ")
    assert json.loads(data.removeprefix("data: "))["object"]["id"] == row.id
    assert uuid.UUID(row.id)
