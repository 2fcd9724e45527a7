"""Operations endpoints: Prometheus ``/metrics`` labelled by route template, ``/healthcheck`` and ``/livez``."""

from __future__ import annotations

import re

import httpx

from server import health


async def _metrics() -> str:
    transport = httpx.ASGITransport(app=health.metrics_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _count(text: str, **labels: str) -> float:
    """The value of ``rest_api_inbound_request_count`` with exactly these labels (0 when absent)."""
    for line in text.splitlines():
        # NB: prometheus_client exposes a Counter with a ``_total`` suffix.
        if not line.startswith("rest_api_inbound_request_count_total{"):
            continue
        series, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if found == labels:
            return float(value)
    return 0.0


async def test_request_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    before = await _metrics()
    one = {"method": "GET", "path": "/api/maestro/v1/consumers/{id}", "code": "200"}
    missing = {"method": "GET", "path": "/api/maestro/v1/consumers/{id}", "code": "404"}
    created = (await client.post("/api/maestro/v1/consumers", json={"name": "cluster1"})).json()
    for _ in range(3):
        assert (await client.get(created["href"])).status_code == 200
    assert (await client.get("/api/maestro/v1/consumers/8b8b0a0c-7d1e-4b1a-9c57-2f0f9e0e0e0e")).status_code == 404
    assert (await client.get("/api/maestro/v1/no/such/path")).status_code == 404

    after = await _metrics()
    assert _count(after, **one) - _count(before, **one) == 3
    assert _count(after, **missing) - _count(before, **missing) == 1
    post = {"method": "POST", "path": "/api/maestro/v1/consumers", "code": "201"}
    assert _count(after, **post) - _count(before, **post) == 1
    assert "rest_api_inbound_request_duration_bucket{" in after
    # Never the raw id, never an unmatched raw path (unbounded label cardinality).
    assert created["id"] not in after
    assert "/no/such/path" not in after
    assert 'path="/api/maestro/v1/api/maestro/v1"' not in after
    assert (
        _count(after, method="GET", path="unmatched", code="404")
        - _count(before, method="GET", path="unmatched", code="404")
        == 1
    )


async def test_healthcheck() -> None:
    async def ready() -> bool:
        return state["ready"]

    async def broken() -> bool:
        raise OSError("database unreachable")

    state = {"ready": True}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=health.health_app(ready)), base_url="http://h") as c:
        ok = await c.get("/healthcheck")
        assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
        state["ready"] = False
        not_ready = await c.get("/healthcheck")
        assert (not_ready.status_code, not_ready.json()) == (503, {"status": "not ready"})
        live = await c.get("/livez")
        assert live.status_code == 200

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=health.health_app(broken)), base_url="http://h"
    ) as c:
        error = await c.get("/healthcheck")
        assert (error.status_code, error.json()) == (500, {"status": "error"})
        assert (await c.get("/livez")).status_code == 200
