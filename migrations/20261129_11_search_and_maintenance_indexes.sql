-- Indexes for searches, type-filtered lists and the maintenance rounds (issue 11, items 3 to 5).
--
-- Search: the compiler (server/store/search.py) adds `(payload -> 'metadata') @> $n::jsonb` beside every
-- equality on a path under payload.metadata (`payload->'metadata'->'labels'->>'app' = 'x'`,
-- `payload.metadata.labels.app in (...)`, `payload->'metadata'->'labels' @> '{...}'`); jsonb_path_ops
-- answers containment only, and is about a third of the size of the default jsonb_ops. Only metadata is
-- indexed, not the manifests, which hold most of a payload's keys and are never searched by equality.
CREATE INDEX resources_metadata_idx ON resources USING gin ((payload -> 'metadata') jsonb_path_ops);

-- `name like 'web%'` and the CLI's `id like 'abcd%'` (a short id): a plain b-tree serves LIKE prefixes only
-- under the C collation.
CREATE INDEX resources_name_pattern_idx ON resources (name text_pattern_ops);
CREATE INDEX resources_id_pattern_idx ON resources (id text_pattern_ops);

-- Every list is of one type (/resources of singles, /resource-bundles of bundles) in the default order.
CREATE INDEX resources_type_created_at_idx ON resources (type, created_at, id);

-- maintenance.undelivered: live resources whose agent has not reported the current version. The predicate
-- must stay the query's own text; it compares text so that no status can make a write fail on a cast.
CREATE INDEX resources_undelivered_idx ON resources (updated_at)
    WHERE deleted_at IS NULL AND (status IS NULL OR (status ->> 'ObservedVersion') IS DISTINCT FROM version::text);

-- maintenance.prune: retention of both logs.
CREATE INDEX events_created_at_idx ON events (created_at);
CREATE INDEX status_events_created_at_idx ON status_events (created_at);
