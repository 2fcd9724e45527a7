DROP INDEX status_events_created_at_idx;
DROP INDEX events_created_at_idx;
DROP INDEX resources_undelivered_idx;
DROP INDEX resources_type_created_at_idx;
DROP INDEX resources_id_pattern_idx;
DROP INDEX resources_name_pattern_idx;
DROP INDEX resources_metadata_idx;
