"""The CLI against a hub that requires a bearer JWT (``--jwk-cert-file``): a good token by flag, file or
environment works; a missing, malformed or foreign token is the hub's reason in one line and exit code 1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.client_support import hub_process, maestro
from tests.integration.dispatch_support import HubProcess

pytestmark = pytest.mark.timeout(30)


def key_pair() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": "cli", "use": "sig", "alg": "RS256"}


def token(private: rsa.RSAPrivateKey) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": "alice", "iat": now, "exp": now + 300}, private, algorithm="RS256", headers={"kid": "cli"}
    )


@pytest.fixture
async def secured(
    tmp_path: Path, db_url: str, mosquitto: MosquittoServer, mqtt_names: MQTTNames
) -> AsyncIterator[tuple[HubProcess, rsa.RSAPrivateKey]]:
    private, jwk = key_pair()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    process = hub_process(tmp_path, db_url=db_url, mosquitto=mosquitto, source=mqtt_names.source)
    process.argv.remove("--disable-auth")
    process.argv += ["--jwk-cert-file", str(jwks)]
    process.start()
    try:
        await process.wait_ready()
        yield process, private
    finally:
        assert process.stop() == 0, process.output()[-3000:]


async def test_tokens(secured: tuple[HubProcess, rsa.RSAPrivateKey], tmp_path: Path, mqtt_names: MQTTNames) -> None:
    hub, private = secured
    url = f"http://127.0.0.1:{hub.http}"
    good = token(private)

    created = await maestro("consumer", "create", mqtt_names.consumer, "--token", good, rest_url=url)
    assert created.code == 0, created.err
    token_file = tmp_path / "token"
    token_file.write_text(good + "\n")
    listed = await maestro("consumer", "list", "-o", "json", "--token-file", str(token_file), rest_url=url)
    assert json.loads(listed.out)["total"] == 1
    assert (await maestro("consumer", "get", mqtt_names.consumer, rest_url=url, MAESTRO_TOKEN=good)).code == 0

    other, _ = key_pair()
    reasons = {}
    for name, args in {
        "none": (),
        "malformed": ("--token", "not-a-jwt"),
        "foreign": ("--token", token(other)),
    }.items():
        for command in (("consumer", "list"), ("resourcebundle", "status", "--watch")):
            result = await maestro(*command, *args, rest_url=url)
            assert result.code == 1, result
            assert len(result.err_lines) == 1, result.err
            assert result.err_lines[0].startswith("maestro: ")
            assert "Traceback" not in result.err
            assert result.out == ""
            reasons[name] = result.err_lines[0]
    assert "doesn't contain the 'Authorization' header" in reasons["none"]
    assert len(set(reasons.values())) == 3  # each says what is wrong with its token

    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args, says in (
        (("--token-file", str(empty)), "is empty"),
        (("--token-file", str(tmp_path / "missing")), "cannot read --token-file"),
        (("--token", good, "--token-file", str(token_file)), "not both"),
    ):
        result = await maestro("consumer", "list", *args, rest_url=url)
        assert result.code == 1, result
        assert len(result.err_lines) == 1, result
        assert says in result.err
