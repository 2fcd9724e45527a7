"""Fixtures for integration tests: a migrated database per test and the REST app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import databases
import httpx
import pytest

from server.app import create_app
from server.dsn import plain
from server.settings import Settings
from server.store import db as store_db
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import Hub


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings.of(db_url=db_url, disable_auth=True)


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[databases.Database]:
    db = store_db.database(db_url, max_size=20)
    await db.connect()
    try:
        yield db
    finally:
        await db.disconnect()


@pytest.fixture
async def client(settings: Settings, database: databases.Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=database)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=_with_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://maestro") as c:
            yield c


def _with_state(app: object, state: object) -> object:
    """ASGITransport runs no lifespan; give each request the lifespan state as uvicorn would."""

    async def asgi(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        scope["state"] = dict(state)  # type: ignore[call-overload]
        await app(scope, receive, send)  # type: ignore[operator]

    return asgi


@pytest.fixture
async def hub(
    database: databases.Database, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[Hub]:
    """The hub's transport in-process (dispatcher, status ingest, resync) against the session's mosquitto."""
    config = mosquitto.config(source=mqtt_names.source)
    hub = Hub(database, config, source=mqtt_names.source, client_id=mqtt_names.client_id("hub"), dsn=plain(db_url))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
