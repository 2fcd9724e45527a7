"""The hub's INFO summary per interval: the transport counters' deltas in one line, nothing when idle."""

from __future__ import annotations

from server.dispatch import metrics, summary


def test_one_line_of_what_happened_since_the_last_and_none_when_idle() -> None:
    line = summary.Summary()
    assert line.line(60) is None
    metrics.SPEC_PUBLISHED.labels("create_request").inc(2)
    metrics.SPEC_PUBLISHED.labels("delete_request").inc()
    metrics.STATUS_ACCEPTED.labels("update").inc(4)
    metrics.STATUS_DROPPED.labels("unchanged").inc()
    metrics.STATUS_DROPPED.labels("error").inc()
    metrics.SPEC_PUBLISH_ERRORS.labels("ack_timeout").inc()
    assert line.line(60) == (
        "last 60s: published 3 (create_request 2, delete_request 1), statuses 4 (update 4),"
        " dropped 1 (unchanged 1), errors 2"
    )
    assert line.line(60) is None
