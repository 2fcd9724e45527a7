"""Prometheus metrics of the transport. Labels never carry resource ids or consumer names (unbounded)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SPEC_PUBLISHED = Counter("maestro_spec_events_published", "spec CloudEvents published to agents", ["action"])
SPEC_PUBLISH_ERRORS = Counter(
    "maestro_spec_publish_errors", "failed spec publishes (each is retried with backoff)", ["reason"]
)
SPEC_LATENCY = Histogram(
    "maestro_spec_write_to_published_seconds",
    "time from the oldest pending spec event of a resource to the broker's acknowledgement of its publish",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
QUEUED = Gauge("maestro_dispatch_queued_resources", "dirty resources queued in this dispatcher")
STATUS_ACCEPTED = Counter("maestro_status_accepted", "agent status events stored", ["kind"])
STATUS_DROPPED = Counter("maestro_status_dropped", "agent events dropped by the status ingest", ["reason"])
STATUS_HELD = Gauge("maestro_status_held", "agent statuses held while the database is unavailable, to store later")
RESYNC_SENT = Counter("maestro_resync_events_sent", "resync events sent to agents", ["kind"])
NOT_OWNER = Counter("maestro_status_not_owner", "agent events left to the consumer's owner (broadcast subscriptions)")
UNDELIVERED_REPUBLISHED = Counter(
    "spec_controller_undelivered_resources_republished", "resources without status re-published after the threshold"
)
DELETES_REPUBLISHED = Counter("maestro_deletes_republished", "unconfirmed deletes published again")
DELETES_RETIRED = Counter(
    "spec_controller_stale_delete_events_reconciled", "deletes no agent confirmed within the threshold, retired"
)
LIVE_REPLICAS = Gauge("server_instances_live", "live hub replicas as this replica sees them")
OWNED_CONSUMERS = Gauge("server_instance_owned_consumers", "consumers this replica owns")
