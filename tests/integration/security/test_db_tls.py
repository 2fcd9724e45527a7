"""The hub's database pool honours the URL's TLS settings (``sslmode``, ``sslrootcert``), as its LISTEN connection
and the migrations (libpq) do: against a PostgreSQL that accepts TLS only, with a certificate from a test CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from server.store import db as store_db
from tests.fixtures.postgres import Cluster, PostgresServer
from tests.integration.security.support import PKI


@pytest.fixture(scope="module")
def tls_postgres(pki: PKI) -> Iterator[PostgresServer]:
    cluster = Cluster(tls=(pki.server_cert_file, pki.server_key_file))
    cluster.start()
    try:
        yield cluster.server
    finally:
        cluster.remove()


async def _encrypted(url: str) -> bool:
    """Whether the pool's connection for ``url`` uses TLS (PostgreSQL's own view of it)."""
    database = store_db.database(url, max_size=1)
    await database.connect()
    try:
        async with store_db.connection(database) as conn:
            return bool(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    finally:
        await database.disconnect()


async def test_verify_full_against_the_servers_ca_connects_encrypted(tls_postgres: PostgresServer, pki: PKI) -> None:
    assert await _encrypted(f"{tls_postgres.dsn()}?sslmode=verify-full&sslrootcert={pki.ca_file}")


async def test_verify_full_refuses_a_server_the_ca_did_not_sign(tls_postgres: PostgresServer, tmp_path: Path) -> None:
    other = PKI(tmp_path, name="other-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _encrypted(f"{tls_postgres.dsn()}?sslmode=verify-full&sslrootcert={other.ca_file}")


async def test_sslmode_disable_is_not_upgraded_behind_the_users_back(tls_postgres: PostgresServer) -> None:
    # NB: this server takes TLS only, so a pool that honours "disable" is turned away.
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await _encrypted(f"{tls_postgres.dsn()}?sslmode=disable")
