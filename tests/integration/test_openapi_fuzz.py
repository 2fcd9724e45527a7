"""Fuzz the REST API with schemathesis from the OpenAPI document it serves: the document is the contract.

Each operation gets a fresh database with the consumer ``cluster1`` (so generated resource creates can succeed)
and a fresh app whose lifespan owns its pool: schemathesis calls ASGI apps from its own event-loop thread, where
the test session's pool cannot be used. Every response must be no 5xx and must match the document: status code,
content type, headers and body schema.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import psycopg
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import create_app
from server.http import openapi
from server.settings import Settings
from tests.fixtures.postgres import PostgresServer, _psql
from tests.integration.test_rest_auth import Key

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    # The server never accepts what the document forbids. (The converse, positive_data_acceptance, cannot hold:
    # JSON Schema cannot express the search grammar or "names an existing consumer".)
    negative_data_rejection,
]
CLUSTER1_ID = "0f0f0f0f-1111-4222-8333-444444444444"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A JWKS file and a valid token for it: the document declares Bearer auth, so the fuzzed app requires it."""
    key = Key("fuzz")
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [key.jwk]}))
    return str(path), key.token(exp=int(time.time()) + 3600)


@pytest.fixture
def fuzz_db(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    """A fresh migrated database with ``cluster1``; created synchronously (the fuzz test is not async)."""
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    _psql(pg_server, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    url = pg_server.dsn(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO consumers (id, name) VALUES (%s, 'cluster1')", (CLUSTER1_ID,))
    try:
        yield url
    finally:
        schemathesis.python.asgi.shutdown_lifespans()
        _psql(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


OPERATIONS = [(method.upper(), path) for path, item in openapi.document()["paths"].items() for method in item]
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # NB: these take no input at all, or only a free-form string: no request can break their schema.
    if not (mode is GenerationMode.NEGATIVE and path.startswith("/api/maestro/v1/errors"))
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_matches_its_document(
    fuzz_db: str, signer: tuple[str, str], method: str, path: str, mode: GenerationMode
) -> None:
    jwks, token = signer
    settings = Settings.of(db_url=fuzz_db, jwk_cert_file=jwks, disable_auth=False, db_max_open_connections=4)
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/api/maestro/v1/openapi", app)
    operation = schema[path][method]
    known = _seed(app, token)

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @hypothesis.settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def fuzz(case: schemathesis.Case, data: st.DataObject) -> None:
        # A generated bearer token is random text; swap in a valid one, but leave it out if the case omits it.
        if case.headers and "Authorization" in case.headers:
            case.headers["Authorization"] = f"Bearer {token}"
        # Random names and ids almost never exist: half of the valid cases get real ones, to reach success paths.
        if mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="steer"):
            if isinstance(case.body, dict) and "consumer_name" in case.body:
                case.body["consumer_name"] = "cluster1"
            if case.path_parameters and "id" in case.path_parameters:
                collection = path.split("/")[4]
                case.path_parameters["id"] = data.draw(st.sampled_from(known[collection]), label="id")
        response = case.call_and_validate(checks=CHECKS)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    statuses: dict[int, int] = {}
    fuzz()
    print(method, path, mode.value, sorted(statuses.items()))


def _seed(app: Any, token: str) -> dict[str, list[str]]:
    """A single resource and a bundle for cluster1, created through the app; ids by collection."""
    headers = {"Authorization": f"Bearer {token}"}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}
    with asgi.get_client(app) as client:
        single = client.post(
            "/api/maestro/v1/resources", json={"consumer_name": "cluster1", "manifest": manifest}, headers=headers
        )
        bundle = client.post(
            "/api/maestro/v1/resource-bundles",
            json={"consumer_name": "cluster1", "manifests": [manifest]},
            headers=headers,
        )
    assert single.status_code == bundle.status_code == 201, (single.text, bundle.text)
    return {
        "consumers": [CLUSTER1_ID],
        "resources": [single.json()["id"]],
        "resource-bundles": [single.json()["id"], bundle.json()["id"]],
        "errors": ["7", "8"],
    }
