"""A create answers the resource as a later read of it returns it, byte for byte, though it no longer has
PostgreSQL send the stored row back (server/store/jsonb.py): the same key order (jsonb's, not the request's) and
the same numbers, for a create written alone and for creates written together by one batch statement."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from tests.integration.test_rest_resources import BUNDLES, RESOURCES

# NB: raw JSON text, so the request's key order and number spellings are exactly these.
MANIFEST = (
    '{"kind":"ConfigMap","apiVersion":"v1","metadata":{"namespace":"default","name":"%s"},'
    '"data":{"zz":"1","a":"2","bb":"3","ab":"4","é":"5","f":"6","日本":"7","xyz":"8"},'
    '"numbers":{"big":1e16,"huge":1.5e300,"negzero":-0.0,"tiny":2.5e-8,"tenth":0.1,"one":1.0,'
    '"int":12345678901234567890123,"exp":1E2,"neg":-3.25e+20},'
    '"list":[{"b":1,"a":[{"dd":true,"c":null}]},"x",2.5]}'
)


@pytest.fixture(autouse=True)
async def consumer(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/maestro/v1/consumers", json={"name": "cluster1"})).status_code == 201


async def _create(client: httpx.AsyncClient, url: str, name: str) -> httpx.Response:
    manifest = MANIFEST % name
    if url == RESOURCES:
        body = f'{{"name":"{name}","manifest":{manifest},"consumer_name":"cluster1"}}'
    else:
        labels = '"metadata":{"labels":{"zeta":"z","app":"a","b":"c"},"annotations":{"k2":"v","k":"v"}}'
        body = f'{{"name":"{name}","id":"{uuid.uuid4()}",{labels},"manifests":[{manifest},{MANIFEST % (name + "-2")}],'
        body += '"consumer_name":"cluster1","delete_option":{"propagationPolicy":"Orphan"}}'
    json.loads(body)  # NB: the test's own JSON is valid
    return await client.post(url, content=body, headers={"content-type": "application/json"})


async def _assert_read_alike(client: httpx.AsyncClient, url: str, created: httpx.Response) -> None:
    assert created.status_code == 201, created.text
    read = await client.get(f"{url}/{created.json()['id']}")
    assert read.status_code == 200
    assert created.content == read.content


@pytest.mark.parametrize("url", [RESOURCES, BUNDLES])
async def test_a_create_alone_answers_what_a_read_returns(client: httpx.AsyncClient, url: str) -> None:
    await _assert_read_alike(client, url, await _create(client, url, "alone"))


@pytest.mark.parametrize("url", [RESOURCES, BUNDLES])
async def test_creates_in_a_batch_answer_what_reads_return(client: httpx.AsyncClient, url: str) -> None:
    answers = await asyncio.gather(*(_create(client, url, f"batch-{i}") for i in range(12)))
    for created in answers:
        await _assert_read_alike(client, url, created)
