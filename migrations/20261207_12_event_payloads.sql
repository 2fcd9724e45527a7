-- The spec log holds the facts (issue 9, item 1): every spec event that records a change (Create, Update,
-- Delete, and the new Deleted = delete completion) carries the resource as of that event in `payload`:
--   {"name", "source", "type", "created_at", "updated_at", "deleted_at", "actor", "spec": <resources.payload>}
-- (the version and consumer are the row's own columns). Spec events without a payload are re-publish nudges
-- written by maintenance, or rows written before this migration. `resources` is a projection of the two logs
-- (`maestro admin rebuild`).
--
-- Rows written before this migration carry no payload: each existing resource gets one `Snapshot` event built
-- from its current row (actor "migration"), already reconciled so the dispatcher does not re-publish it.

ALTER TABLE events DROP CONSTRAINT events_event_type_check;
ALTER TABLE events ADD CONSTRAINT events_event_type_check
    CHECK (event_type IN ('Create', 'Update', 'Delete', 'Deleted', 'Snapshot'));

-- Dead columns (issue 9, item 7): nothing reads or writes them.
ALTER TABLE events DROP COLUMN source;
ALTER TABLE status_events DROP COLUMN reconciled_date;

INSERT INTO events (source_id, consumer_name, event_type, version, payload, created_at, reconciled_date)
SELECT r.id, r.consumer_name, 'Snapshot', r.version,
       jsonb_build_object('name', r.name, 'source', r.source, 'type', r.type, 'created_at', r.created_at,
                          'updated_at', r.updated_at, 'deleted_at', r.deleted_at, 'actor', 'migration',
                          'spec', r.payload),
       r.updated_at, now()
FROM resources r ORDER BY r.updated_at, r.id;

-- History reads one resource's spec events in log order, and its statuses per version.
DROP INDEX events_source_id_idx;
CREATE INDEX events_source_id_idx ON events (source_id, id);
DROP INDEX status_events_resource_id_idx;
CREATE INDEX status_events_resource_id_idx ON status_events (resource_id, version, id);
