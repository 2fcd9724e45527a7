"""Bearer JWT authentication on the REST API, against a JWKS file or a JWKS served over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import databases
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from server import auth
from server.app import create_app
from server.settings import Settings
from tests.integration.conftest import _with_state

CONSUMERS = "/api/maestro/v1/consumers"
SEED_401 = {
    "kind": "Error",
    "id": "401",
    "href": "/api/maestro/errors/401",
    "code": "API-401",
    "reason": "Request doesn't contain the 'Authorization' header or the 'cs_jwt' cookie",
}
ISSUER = "https://sso.example.com/realms/test"
AUDIENCE = "maestro"


class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwk(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**out, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, *, kid: str | None = "", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": "alice", "iat": now, "exp": now + 300, **claims}
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(payload, self.private, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], kid: str) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def hs256_with_public_key(key: Key, payload: dict[str, Any]) -> str:
    """The classic algorithm-confusion token: HMAC keyed with the RSA public key's PEM."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(key.public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


@pytest.fixture(scope="module")
def key() -> Key:
    return Key("key-1")


@pytest.fixture(scope="module")
def other_key() -> Key:
    return Key("key-1")  # same kid, different key material


async def _client(settings: Settings, database: databases.Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=_with_state(app, {"database": database, "settings": settings}))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://maestro") as client:
        yield client


@pytest.fixture
def jwks_file(tmp_path: Path, key: Key) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.jwk]}))
    return str(path)


@pytest.fixture
async def secured(db_url: str, database: databases.Database, jwks_file: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.of(db_url=db_url, jwk_cert_file=jwks_file, disable_auth=False)
    async for client in _client(settings, database):
        yield client


@pytest.fixture
async def strict(db_url: str, database: databases.Database, jwks_file: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.of(
        db_url=db_url, jwk_cert_file=jwks_file, disable_auth=False, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    async for client in _client(settings, database):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(response: httpx.Response, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body: dict[str, Any] = response.json()
    assert body.pop("operation_id") == response.headers["X-Operation-ID"]
    assert {k: v for k, v in body.items() if k != "reason"} == {k: v for k, v in SEED_401.items() if k != "reason"}
    if reason is not None:
        assert reason in body["reason"], body["reason"]
    return body


# -- JWKS file ---------------------------------------------------------------------------------------


async def test_no_token_gets_the_seed_body(secured: httpx.AsyncClient) -> None:
    for method, path in (("GET", CONSUMERS), ("POST", CONSUMERS), ("GET", f"{CONSUMERS}/x"), ("GET", "/nothing")):
        response = await secured.request(method, path, json={} if method == "POST" else None)
        body = assert_401(response)
        assert body == SEED_401
    for header in ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "token abc"):
        assert assert_401(await secured.get(CONSUMERS, headers={"Authorization": header})) == SEED_401


async def test_valid_token(secured: httpx.AsyncClient, key: Key) -> None:
    response = await secured.get(CONSUMERS, headers=bearer(key.token()))
    assert response.status_code == 200, response.text
    created = await secured.post(CONSUMERS, json={"name": "cluster1"}, headers=bearer(key.token()))
    assert created.status_code == 201
    # One key in the set: a token without kid is checked against it.
    assert (await secured.get(CONSUMERS, headers=bearer(key.token(kid=None)))).status_code == 200
    # The scheme is case-insensitive, as RFC 6750 says.
    assert (await secured.get(CONSUMERS, headers={"Authorization": f"bearer {key.token()}"})).status_code == 200


async def test_cookie(secured: httpx.AsyncClient, key: Key) -> None:
    response = await secured.get(CONSUMERS, headers={"Cookie": f"theme=dark; cs_jwt={key.token()}"})
    assert response.status_code == 200
    assert_401(await secured.get(CONSUMERS, headers={"Cookie": "cs_jwt=garbage"}), "malformed")
    assert assert_401(await secured.get(CONSUMERS, headers={"Cookie": "cs_jwt="})) == SEED_401


async def test_rejected_tokens(secured: httpx.AsyncClient, key: Key, other_key: Key) -> None:
    now = int(time.time())
    cases = {
        "expired": (key.token(exp=now - 60, iat=now - 600), "expired"),
        "no exp": (jwt.encode({"sub": "a"}, key.private, algorithm="RS256", headers={"kid": key.kid}), "exp"),
        "not yet valid": (key.token(nbf=now + 600), "invalid"),
        "wrong key": (other_key.token(), "invalid"),
        "unknown kid": (key.token(kid="key-9"), "unknown key"),
        "alg none": (unsigned({"sub": "a", "exp": now + 300}, key.kid), "'none' is not accepted"),
        "hs256 confusion": (hs256_with_public_key(key, {"sub": "a", "exp": now + 300}), "'HS256' is not accepted"),
        "garbage": ("not.a.jwt", "malformed"),
        "tampered": (key.token()[:-4] + "AAAA", "invalid"),
    }
    for name, (token, reason) in cases.items():
        body = assert_401(await secured.get(CONSUMERS, headers=bearer(token)), reason)
        assert body["reason"] != SEED_401["reason"], name


async def test_issuer_and_audience(strict: httpx.AsyncClient, key: Key) -> None:
    good = key.token(iss=ISSUER, aud=AUDIENCE)
    assert (await strict.get(CONSUMERS, headers=bearer(good))).status_code == 200
    assert (await strict.get(CONSUMERS, headers=bearer(key.token(iss=ISSUER, aud=[AUDIENCE, "x"])))).status_code == 200
    for token in (
        key.token(iss="https://evil.example.com", aud=AUDIENCE),
        key.token(iss=ISSUER, aud="someone-else"),
        key.token(aud=AUDIENCE),
        key.token(iss=ISSUER),
    ):
        assert_401(await strict.get(CONSUMERS, headers=bearer(token)), "invalid")


async def test_public_paths(secured: httpx.AsyncClient) -> None:
    for path in (
        "/api/maestro",
        "/api/maestro/",
        "/api/maestro/v1",
        "/api/maestro/v1/",
        "/api/maestro/v1/openapi",
        "/api/maestro/v1/errors",
        "/api/maestro/v1/errors/7",
    ):
        # NB: "/api/maestro/" answers with Starlette's slash redirect, itself public.
        response = await secured.get(path, follow_redirects=True)
        assert response.status_code == 200, (path, response.text)


async def test_auth_off_when_disabled(db_url: str, database: databases.Database, jwks_file: str) -> None:
    settings = Settings.of(db_url=db_url, jwk_cert_file=jwks_file, disable_auth=True)
    async for client in _client(settings, database):
        assert (await client.get(CONSUMERS)).status_code == 200


# -- JWKS over HTTP ----------------------------------------------------------------------------------


class _JWKSServer:
    """A tiny JWKS endpoint on 127.0.0.1 whose key set a test can swap, counting fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                data = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200 if self.path == "/certs" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/certs"


@pytest.fixture
def jwks_server() -> Iterator[_JWKSServer]:
    server = _JWKSServer()
    thread = threading.Thread(target=server.httpd.serve_forever, name="jwks", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join()


async def test_jwks_url_and_rotation(
    db_url: str, database: databases.Database, jwks_server: _JWKSServer, key: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks_server.keys = [key.jwk]
    settings = Settings.of(db_url=db_url, jwk_cert_url=jwks_server.url, disable_auth=False)
    async for client in _client(settings, database):
        assert (await client.get(CONSUMERS, headers=bearer(key.token()))).status_code == 200
        assert (await client.get(CONSUMERS, headers=bearer(key.token()))).status_code == 200
        assert jwks_server.fetches == 1  # cached

        # The issuer rotates to a new key; a token naming it makes the server refetch (rate-limited).
        rotated = Key("key-2")
        jwks_server.keys = [key.jwk, rotated.jwk]
        monkeypatch.setattr(auth, "REFRESH_INTERVAL", 0.0)
        assert (await client.get(CONSUMERS, headers=bearer(rotated.token()))).status_code == 200
        assert jwks_server.fetches == 2

        # Unknown kids do not make the server hammer the issuer while the cache is fresh.
        monkeypatch.setattr(auth, "REFRESH_INTERVAL", 3600.0)
        for _ in range(3):
            assert_401(await client.get(CONSUMERS, headers=bearer(Key("key-3").token())), "unknown key")
        assert jwks_server.fetches == 2
        assert assert_401(await client.get(CONSUMERS)) == SEED_401


async def test_jwks_url_unreachable(db_url: str, database: databases.Database) -> None:
    from tests.fixtures.postgres import free_port

    settings = Settings.of(db_url=db_url, jwk_cert_url=f"http://127.0.0.1:{free_port()}/certs", disable_auth=False)
    async for client in _client(settings, database):
        token = Key("k").token()
        assert_401(await client.get(CONSUMERS, headers=bearer(token)), "cannot load the signing keys")
        assert (await client.get("/api/maestro/v1/openapi")).status_code == 200
