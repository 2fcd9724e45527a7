"""The REST request metrics of ``--http-workers`` processes, served by the hub process's ``/metrics``.

Prometheus scrapes one port per replica, the hub process's. With REST in worker processes the request metrics
(``rest_api_inbound_*``) are counted there, so on each scrape the hub asks every worker for them
(:meth:`server.workers.Workers.metrics`) and serves each series summed over the processes, under the same names
and labels as a single process would: a dashboard does not see how many processes serve the port.

A worker answers with :func:`snapshot` (the families of :data:`RELAYED` as plain data, one JSON line); the hub
serves :class:`Merged`. A worker that does not answer in time counts with its last answer. Sums stay monotone:
a worker is never replaced while the hub runs (one that ends stops the hub).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from server.http import middleware

RELAYED: Final = (middleware.REQUESTS, middleware.LATENCY)
"""What a worker counts that the hub process does not: the REST request metrics."""

Snapshot = list[dict[str, Any]]
"""One process's :data:`RELAYED` families: ``{"name", "documentation", "type", "unit", "samples"}`` each, a sample
as ``[name, labels, value]``."""


def snapshot() -> Snapshot:
    """This process's :data:`RELAYED` families, as plain data (JSON)."""
    return [
        {
            "name": family.name,
            "documentation": family.documentation,
            "type": family.type,
            "unit": family.unit,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
        for metric in RELAYED
        for family in metric.collect()
    ]


def merge(snapshots: Iterable[Snapshot]) -> list[Metric]:
    """The families of ``snapshots`` with each series summed over them (a ``_created`` time: the earliest)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families_of_one in snapshots:
        for f in families_of_one:
            name = f["name"]
            if name not in families:
                families[name] = Metric(name, f["documentation"], f["type"], f["unit"])
                values[name] = {}
            series = values[name]
            for sample_name, labels, value in f["samples"]:
                key = (sample_name, tuple(sorted(labels.items())))
                if key not in series:
                    series[key] = value
                elif sample_name.endswith("_created"):
                    series[key] = min(series[key], value)
                else:
                    series[key] += value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class Merged(Collector):
    """The hub process's registry, its :data:`RELAYED` families summed with the workers' ``snapshots``."""

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        relayed = {family.name for metric in RELAYED for family in metric.collect()}
        for family in REGISTRY.collect():
            if family.name not in relayed:
                yield family
        yield from merge([snapshot(), *self.snapshots])


def registry(snapshots: Sequence[Snapshot]) -> CollectorRegistry:
    """A registry to expose: the hub process's metrics with the workers' REST request metrics summed in."""
    merged = CollectorRegistry(auto_describe=False)
    merged.register(Merged(snapshots))
    return merged
