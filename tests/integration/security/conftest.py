"""Fixtures for the security suite: one database and one set of names per module (its hub outlives a test)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.mosquitto import MQTTNames
from tests.fixtures.postgres import PostgresServer, _psql
from tests.integration.security.support import PKI, Signer


@pytest.fixture(scope="module")
def module_db_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    name = f"sec_{uuid.uuid4().hex[:12]}"
    _psql(pg_server, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        yield pg_server.dsn(name)
    finally:
        with contextlib.suppress(Exception):
            _psql(pg_server, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def names() -> MQTTNames:
    return MQTTNames(token=uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer.create(tmp_path_factory.mktemp("jwks"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))
