"""The access log in-process: one line per request with the route template, also for a request the authentication
middleware refuses before routing (the raw path would put ids in the log)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from server.app import create_app
from server.settings import Settings


def _jwks(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path.write_text(json.dumps({"keys": [{**json.loads(RSAAlgorithm.to_jwk(key)), "kid": "k1"}]}))
    return path


async def test_refused_and_unknown_requests_are_logged_by_template_or_escaped_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.of(db_url="postgresql://unused/maestro", jwk_cert_file=str(_jwks(tmp_path / "jwks.json")))
    app = create_app(settings)
    caplog.set_level(logging.INFO, logger="server.http.access")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://maestro") as client:
        assert (await client.get("/api/maestro/v1/resource-bundles/3f28c601")).status_code == 401
        assert (await client.delete("/api/maestro/v1/consumers/c1")).status_code == 401
        assert (await client.get("/api/maestro/v1/no%0Asuch")).status_code == 401
    lines = [r.getMessage().rsplit(" ", 2)[0] for r in caplog.records if r.name == "server.http.access"]
    assert lines == [
        "GET /api/maestro/v1/resource-bundles/{id} 401",
        "DELETE /api/maestro/v1/consumers/{id} 401",
        "GET /api/maestro/v1/no%0Asuch 401",  # no route: the path, escaped (a newline cannot forge a line)
    ]
