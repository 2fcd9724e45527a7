"""Finding 6: cookie authentication must not make the REST API writable from another site's form (CSRF), the
trailing-slash redirect must not echo the Host header, and a client that sends its headers (or body) slowly must
not hold a connection forever.

Probed against a real ``maestro server`` (REST with a JWKS) with PostgreSQL and Mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.mosquitto import MosquittoServer, MQTTNames
from tests.integration.dispatch_support import HubProcess, write_mqtt_config
from tests.integration.security.support import Signer


@pytest.fixture(scope="module")
async def hub(
    tmp_path_factory: pytest.TempPathFactory,
    module_db_url: str,
    mosquitto: MosquittoServer,
    names: MQTTNames,
    signer: Signer,
) -> AsyncIterator[HubProcess]:
    directory = tmp_path_factory.mktemp("rest-hardening")
    config = write_mqtt_config(directory / "mqtt.yaml", host=mosquitto.host, port=mosquitto.port, source=names.source)
    process = HubProcess(
        db_url=module_db_url,
        mqtt_config_file=config,
        source=names.source,
        client_id=names.client_id("hub"),
        log=directory / "hub.log",
        args=("--no-disable-auth", "--jwk-cert-file", str(signer.jwks_file)),
    )
    process.start()
    try:
        await process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
async def browser(hub: HubProcess, signer: Signer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that authenticates only with the ``cs_jwt`` cookie, as a browser does on a cross-site request."""
    async with httpx.AsyncClient(base_url=hub.api, headers={"Cookie": f"cs_jwt={signer.token('alice')}"}) as client:
        yield client


async def names_of_consumers(hub: HubProcess, signer: Signer) -> set[str]:
    async with httpx.AsyncClient(base_url=hub.api, headers=signer.headers()) as client:
        listed = await client.get("/consumers", params={"size": 1000})
    assert listed.status_code == 200, listed.text
    return {item["name"] for item in listed.json()["items"]}


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Error"
    assert body["href"] == f"/api/maestro/v1/errors/{body['id']}"
    assert body["code"] == f"maestro-{body['id']}"
    return body


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", json.dumps({"name": "csrf-text"})),
        ("text/plain;charset=UTF-8", json.dumps({"name": "csrf-text-utf8"})),
        ("application/x-www-form-urlencoded", '{"name": "csrf-form", "x": "=1"}'),
        ("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n{}\r\n--b--\r\n'),
        (None, json.dumps({"name": "csrf-untyped"})),
    ],
    ids=["text", "text-utf8", "form", "multipart", "untyped"],
)
async def test_cookie_authenticated_write_needs_a_json_body(
    hub: HubProcess, signer: Signer, browser: httpx.AsyncClient, content_type: str | None, content: str
) -> None:
    """What a cross-site form or ``fetch(..., {mode: "no-cors"})`` can send without a CORS preflight."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = await browser.post("/consumers", content=content.encode(), headers=headers)
    assert "application/json" in assert_error(response, 415)["reason"]
    assert not {"csrf-text", "csrf-text-utf8", "csrf-form", "csrf-untyped"} & await names_of_consumers(hub, signer)


async def test_cookie_authenticated_json_write_works(
    hub: HubProcess, signer: Signer, browser: httpx.AsyncClient
) -> None:
    response = await browser.post("/consumers", json={"name": "via-cookie"})
    assert response.status_code == 201, response.text
    patched = await browser.patch(
        response.json()["href"].removeprefix("/api/maestro/v1"),
        content=b'{"labels": {"a": "b"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert_error(patched, 415)


async def test_bearer_write_with_a_non_json_type_is_415(hub: HubProcess, signer: Signer) -> None:
    async with httpx.AsyncClient(base_url=hub.api, headers=signer.headers()) as client:
        response = await client.post(
            "/consumers", content=b'{"name": "typed-text"}', headers={"Content-Type": "text/plain"}
        )
    assert_error(response, 415)


async def test_trailing_slash_redirect_is_relative(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http}") as client:
        response = await client.get("/api/maestro/v1", headers={"Host": "evil.example"})
        assert response.status_code in (301, 307, 308), response.text
        assert response.headers["location"] == "/api/maestro/v1/"
        followed = await client.get("/api/maestro/v1", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["kind"] == "APIVersion"


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within ``seconds``, and what it sent before."""
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(4096):
                received += chunk
    except TimeoutError:
        return False, received
    return True, received


async def test_slow_headers_are_cut_off(hub: HubProcess) -> None:
    """Slowloris: a connection that sends nothing, or headers one line at a time, is closed (default 5 s)."""
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", hub.http)
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", hub.http)
    started = time.monotonic()
    slow_writer.write(b"GET /api/maestro HTTP/1.1\r\nHost: x\r\n")
    try:
        for _ in range(3):
            await asyncio.sleep(1)
            slow_writer.write(b"X-Slow: 1\r\n")
            await slow_writer.drain()
        closed, _ = await closed_within(slow_reader, 10)
        assert closed, "a client sending headers slowly kept its connection"
        assert time.monotonic() - started < 10
        closed, received = await closed_within(idle_reader, 5)
        assert closed
        assert received == b""
    finally:
        for writer in (idle_writer, slow_writer):
            writer.close()


async def test_slow_body_is_cut_off(hub: HubProcess, signer: Signer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.http)
    try:
        writer.write(
            b"POST /api/maestro/v1/consumers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {signer.token('alice')}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"name": '
        )
        await writer.drain()
        _, received = await closed_within(reader, 15)
        assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    finally:
        writer.close()
