"""Finding 7: a database integrity error is the client's, never a 500. ``DELETE /consumers/{id}`` while a resource
references it is upstream's 403 (code 4), also on PostgreSQL 18 (the embedded default), which reports the
``ON DELETE RESTRICT`` foreign key as ``restrict_violation`` (23001) where PostgreSQL 15 says
``foreign_key_violation`` (23503). Every other constraint class maps to a 4xx in the error format as well.
"""

from __future__ import annotations

import asyncio
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import databases
import httpx
import pytest
from platformdirs.api import RuntimeDirWarning
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import embedded
from server.http import errors as http_errors
from server.store.db import connection
from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import HubProcess, write_mqtt_config
from tests.integration.security.support import CONFIGMAP


@pytest.fixture(scope="module")
def embedded_pg_url() -> Iterator[str]:
    """The embedded PostgreSQL (18) that ``maestro server`` runs when no --db-url is given."""
    root = Path(tempfile.mkdtemp(prefix="maestro-sec-pg-", dir="/tmp"))
    pg = embedded.EmbeddedPostgres(root)
    with warnings.catch_warnings():
        # NB: pgserver keeps its lock file in the XDG runtime dir; CI has none, and platformdirs warns about /tmp.
        warnings.simplefilter("ignore", RuntimeDirWarning)
        url = pg.start()
    try:
        yield url
    finally:
        pg.stop()


@pytest.fixture
async def hub(
    tmp_path: Path, embedded_pg_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[HubProcess]:
    config = write_mqtt_config(
        tmp_path / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=mqtt_names.source
    )
    process = HubProcess(
        db_url=embedded_pg_url,
        mqtt_config_file=config,
        source=mqtt_names.source,
        client_id=mqtt_names.client_id("hub"),
        log=tmp_path / "hub.log",
        args=("--auto-migrate",),
    )
    process.start()
    try:
        await process.wait_ready(timeout=120)
        yield process
    finally:
        process.stop()


async def test_deleting_a_referenced_consumer_is_403(hub: HubProcess, mqtt_names: MQTTNames) -> None:
    async with httpx.AsyncClient(base_url=hub.api) as client:
        consumer = await client.post("/consumers", json={"name": mqtt_names.consumer})
        assert consumer.status_code == 201, consumer.text
        resource = await client.post("/resources", json={"consumer_name": mqtt_names.consumer, "manifest": CONFIGMAP})
        assert resource.status_code == 201, resource.text
        href = consumer.json()["href"].removeprefix("/api/maestro/v1")
        refused = await client.delete(href, headers={"X-Operation-ID": "op-1"})
        assert refused.status_code == 403, refused.text
        assert refused.json() == {
            "kind": "Error",
            "id": "4",
            "href": "/api/maestro/v1/errors/4",
            "code": "maestro-4",
            "reason": refused.json()["reason"],
            "operation_id": "op-1",
        }
        assert "referenced by resources" in refused.json()["reason"]
        assert (await client.get(href)).status_code == 200
    assert "Traceback" not in hub.output()


# Each statement breaks one kind of constraint of the real schema (class 23, integrity_constraint_violation).
VIOLATIONS = {
    "unique": "INSERT INTO consumers (id, name) VALUES ('c2', 'taken')",
    "foreign-key": "INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
    " VALUES ('r2', 'r2', 's', 'missing', 'Bundle', 1, '{}')",
    "restrict": "DELETE FROM consumers WHERE name = 'taken'",
    "check": "UPDATE resources SET version = 0 WHERE id = 'r1'",
    "not-null": "UPDATE resources SET payload = NULL WHERE id = 'r1'",
}


@pytest.mark.parametrize(("kind", "statement"), list(VIOLATIONS.items()), ids=list(VIOLATIONS))
async def test_every_integrity_error_is_4xx_in_the_error_format(
    database: databases.Database, kind: str, statement: str
) -> None:
    """Whatever constraint a request trips, past the services' own checks, the REST error handlers answer 4xx."""
    async with connection(database) as conn:
        await conn.execute("INSERT INTO consumers (id, name) VALUES ('c1', 'taken')")
        await conn.execute(
            "INSERT INTO resources (id, name, source, consumer_name, type, version, payload)"
            " VALUES ('r1', 'r1', 's', 'taken', 'Bundle', 1, '{}')"
        )

    async def violate(request: Request) -> Response:
        async with connection(database) as conn:
            await conn.execute(statement)
        return Response(status_code=204)

    app = Starlette(routes=[Route("/violate", violate, methods=["POST"])], exception_handlers=http_errors.HANDLERS)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://maestro") as client:
        response = await client.post("/violate")
    assert 400 <= response.status_code < 500, (kind, response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Error"
    assert body["code"] == f"maestro-{body['id']}"
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        async with connection(database) as conn:
            await asyncio.wait_for(conn.execute(statement), 10)
