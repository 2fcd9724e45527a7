"""The hub's ``/metrics`` with REST workers (server/worker_metrics.py): each series summed over the processes."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server import worker_metrics
from server.http import middleware


def counter(*series: tuple[dict[str, str], float, float]) -> worker_metrics.Snapshot:
    samples = []
    for labels, value, created in series:
        samples += [["requests_total", labels, value], ["requests_created", labels, created]]
    return [{"name": "requests", "documentation": "REST requests", "type": "counter", "unit": "", "samples": samples}]


def test_series_are_summed_and_created_is_the_earliest() -> None:
    ok, missing = {"code": "200"}, {"code": "404"}
    merged = worker_metrics.merge([counter((ok, 3, 20.0), (missing, 1, 30.0)), counter((ok, 4, 10.0))])
    (family,) = merged
    assert (family.name, family.type) == ("requests", "counter")
    got = {(s.name, s.labels["code"]): s.value for s in family.samples}
    assert got == {
        ("requests_total", "200"): 7,
        ("requests_created", "200"): 10.0,
        ("requests_total", "404"): 1,
        ("requests_created", "404"): 30.0,
    }


def test_the_hub_serves_its_own_and_the_workers_requests_as_one_family() -> None:
    labels = ("GET", "/api/maestro/v1/unit-test-route", "200")
    middleware.REQUESTS.labels(*labels).inc(2)
    middleware.LATENCY.labels(*labels).observe(0.003)
    worker = worker_metrics.snapshot()  # NB: this process standing in for a worker that served the same requests
    exposed = generate_latest(worker_metrics.registry([worker, worker])).decode()
    assert exposed.count("# TYPE rest_api_inbound_request_count_total counter") == 1
    wanted = dict(zip(("method", "path", "code"), labels, strict=True))
    values = {s.name: s.value for f in text_string_to_metric_families(exposed) for s in f.samples if s.labels == wanted}
    assert values["rest_api_inbound_request_count_total"] == 3 * 2
    assert values["rest_api_inbound_request_duration_count"] == 3 * 1
    assert "python_gc_objects_collected_total" in exposed  # NB: the hub process's other metrics are still served
