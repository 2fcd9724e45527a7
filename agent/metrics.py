"""The agent's Prometheus metrics (served on ``/metrics`` next to ``/healthz``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

APPLIED = Counter("maestro_agent_works_applied_total", "Reconciles of a work that wrote to the cluster")
APPLY_FAILED = Counter("maestro_agent_apply_failures_total", "Reconciles that left a manifest not applied")
DRIFT = Counter("maestro_agent_drift_corrected_total", "Applied objects changed by someone else and re-applied")
DELETED = Counter("maestro_agent_works_deleted_total", "Works whose manifests were removed after a delete")
STATUS_PUBLISHED = Counter("maestro_agent_status_published_total", "Status events sent to the hub", ["action"])
SPEC_RECEIVED = Counter("maestro_agent_spec_events_total", "Spec events received for this consumer", ["action"])
WORKS = Gauge("maestro_agent_works", "AppliedWorks held by this agent")
BROKER_CONNECTED = Gauge("maestro_agent_broker_connected", "1 while the broker link is up")
KUBE_REQUESTS = Gauge("maestro_agent_kube_requests", "Requests sent to the Kubernetes API server", ["verb"])
RECONCILE_SECONDS = Histogram(
    "maestro_agent_reconcile_duration_seconds",
    "Duration of one reconcile of a work",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
