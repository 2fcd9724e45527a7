"""One INFO line per interval about what the transport did: specs published, statuses stored, events dropped,
errors; nothing when it did nothing. Each publish and status is a DEBUG line of its own (publisher, ingest).

The counts are the deltas of the transport's Prometheus counters (:mod:`server.dispatch.metrics`), so the line
and ``/metrics`` cannot disagree and the hot paths count nothing twice.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from server.dispatch import metrics

log = logging.getLogger(__name__)


def _by_label(counter: Counter) -> dict[str, float]:
    return {
        next(iter(sample.labels.values()), ""): sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def _snapshot() -> dict[str, dict[str, float]]:
    return {
        "published": _by_label(metrics.SPEC_PUBLISHED),
        "publish_errors": _by_label(metrics.SPEC_PUBLISH_ERRORS),
        "statuses": _by_label(metrics.STATUS_ACCEPTED),
        "dropped": _by_label(metrics.STATUS_DROPPED),
    }


def _delta(now: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    out = {key: int(value - before.get(key, 0.0)) for key, value in now.items()}
    return {key: n for key, n in sorted(out.items()) if n}


def _part(noun: str, counts: dict[str, int]) -> str:
    total = sum(counts.values())
    detail = ", ".join(f"{key} {n}" for key, n in counts.items())
    return f"{noun} {total}" + (f" ({detail})" if detail else "")


class Summary:
    """Compares the counters with the previous call; :meth:`line` is ``None`` when nothing happened."""

    def __init__(self) -> None:
        self._before = _snapshot()

    def line(self, interval: float) -> str | None:
        now = _snapshot()
        d = {key: _delta(now[key], self._before[key]) for key in now}
        self._before = now
        if not any(d.values()):
            return None
        dropped = {k: n for k, n in d["dropped"].items() if k != "error"}
        errors = sum(d["publish_errors"].values()) + d["dropped"].get("error", 0)
        parts = [_part("published", d["published"]), _part("statuses", d["statuses"]), _part("dropped", dropped)]
        return f"last {interval:g}s: " + ", ".join(parts) + f", errors {errors}"


async def run(interval: float) -> None:
    """Log :meth:`Summary.line` every ``interval`` seconds until cancelled."""
    summary = Summary()
    while True:
        await asyncio.sleep(interval)
        if (text := summary.line(interval)) is not None:
            log.info("%s", text)
