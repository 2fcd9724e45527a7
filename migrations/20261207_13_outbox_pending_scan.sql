-- The dispatcher's sweep (server/store/outbox.py) reads the pending spec events through events_pending_idx, by a
-- plain index scan only. Marking an event reconciled is not a HOT update (the index predicate names the column),
-- so the index keeps an entry for every event marked since the last VACUUM, which on a busy log runs rarely (every
-- 20 % of the table's size). A plain index scan marks such entries dead as it passes them (and a page split then
-- drops them), so the next sweeps step over them; a bitmap scan, which the planner picks whenever its statistics
-- are stale or absent (a new or fast-growing log: every benchmark, and the first minute of every hub), marks
-- nothing and visits the heap row of every marked event again on every sweep: a sweep then costs in proportion to
-- the events written since the last VACUUM instead of to those pending. A function's SET clause is the only way to
-- hold the planner to one plan for one query.
--
-- At most per_consumer events of each consumer, its oldest: a consumer whose agent is behind (or a hub that cannot
-- publish as fast as it is written to) would otherwise have its whole backlog read and grouped on every sweep. The
-- consumers with pending events are found by a skip scan of the same index (one probe per consumer).
CREATE FUNCTION pending_events(per_consumer integer)
    RETURNS TABLE (id bigint, source_id text, consumer_name text, created_at timestamptz)
    LANGUAGE plpgsql STABLE ROWS 100
    SET enable_bitmapscan = off
    SET enable_seqscan = off
AS $$
DECLARE
    consumer text;
BEGIN
    -- NB: PL/pgSQL keeps the plans for the session; an SQL function with a SET clause is planned on every call.
    SELECT min(e.consumer_name) INTO consumer FROM events e WHERE e.reconciled_date IS NULL;
    WHILE consumer IS NOT NULL LOOP
        RETURN QUERY SELECT e.id, e.source_id, e.consumer_name, e.created_at FROM events e
            WHERE e.reconciled_date IS NULL AND e.consumer_name = consumer ORDER BY e.id LIMIT per_consumer;
        SELECT min(e.consumer_name) INTO consumer FROM events e
            WHERE e.reconciled_date IS NULL AND e.consumer_name > consumer;
    END LOOP;
END
$$;
