-- Initial schema: consumers, resources, the two event logs and the replica registry.
-- Every log row stores the id of the transaction that wrote it (xid8), so cursor readers can
-- read only rows whose transaction is visible to every snapshot and never skip a late commit.

CREATE TABLE consumers (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    labels      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE resources (
    id              text PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    source          text NOT NULL,
    consumer_name   text NOT NULL REFERENCES consumers (name) ON DELETE RESTRICT ON UPDATE RESTRICT,
    type            text NOT NULL CHECK (type IN ('Single', 'Bundle')),
    version         integer NOT NULL CHECK (version >= 1),
    payload         jsonb NOT NULL,
    status          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX resources_consumer_name_idx ON resources (consumer_name);
CREATE INDEX resources_source_idx ON resources (source);
CREATE INDEX resources_deleted_at_idx ON resources (deleted_at);
CREATE INDEX resources_created_at_idx ON resources (created_at, id);

-- The spec event log (outbox). A row is "pending" until the dispatcher has published the
-- resource's state at or after this event and set reconciled_date.
CREATE TABLE events (
    id               bigserial PRIMARY KEY,
    xid              xid8 NOT NULL DEFAULT pg_current_xact_id(),
    source           text NOT NULL DEFAULT 'Resources',
    source_id        text NOT NULL,
    consumer_name    text NOT NULL,
    event_type       text NOT NULL CHECK (event_type IN ('Create', 'Update', 'Delete')),
    version          integer NOT NULL,
    payload          jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    reconciled_date  timestamptz
);
CREATE INDEX events_cursor_idx ON events (xid, id);
CREATE INDEX events_source_id_idx ON events (source_id);
CREATE INDEX events_pending_idx ON events (consumer_name, id) WHERE reconciled_date IS NULL;

-- The status event log: every accepted status transition, and the final StatusDelete.
CREATE TABLE status_events (
    id                 bigserial PRIMARY KEY,
    xid                xid8 NOT NULL DEFAULT pg_current_xact_id(),
    resource_id        text NOT NULL,
    resource_source    text NOT NULL,
    resource_type      text NOT NULL,
    consumer_name      text NOT NULL,
    status_event_type  text NOT NULL CHECK (status_event_type IN ('StatusUpdate', 'StatusDelete')),
    version            integer NOT NULL,
    payload            jsonb,
    status             jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    reconciled_date    timestamptz
);
CREATE INDEX status_events_cursor_idx ON status_events (xid, id);
CREATE INDEX status_events_resource_id_idx ON status_events (resource_id);

CREATE TABLE server_instances (
    id              text PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now(),
    ready           boolean NOT NULL DEFAULT false
);
