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
-- The events of the consumers in skip (sorted) are not read at all: the dispatcher passes those with work already
-- queued, whose oldest events it holds, and reads theirs once the queue has drained. Their index ranges are
-- stepped over, not filtered row by row: a backlog of thousands on one consumer costs the sweep nothing, and many
-- consumers with a few events each cost one range scan, as one query.
CREATE FUNCTION pending_events(skip text[])
    RETURNS TABLE (id bigint, source_id text, consumer_name text, created_at timestamptz)
    LANGUAGE plpgsql STABLE ROWS 100
    SET enable_bitmapscan = off
    SET enable_seqscan = off
AS $$
DECLARE
    upto text;
    after text := NULL;
BEGIN
    -- NB: PL/pgSQL keeps the plans for the session; an SQL function with a SET clause is planned on every call.
    FOREACH upto IN ARRAY skip LOOP
        IF after IS NULL THEN
            RETURN QUERY SELECT e.id, e.source_id, e.consumer_name, e.created_at FROM events e
                WHERE e.reconciled_date IS NULL AND e.consumer_name < upto;
        ELSE
            RETURN QUERY SELECT e.id, e.source_id, e.consumer_name, e.created_at FROM events e
                WHERE e.reconciled_date IS NULL AND e.consumer_name > after AND e.consumer_name < upto;
        END IF;
        after := upto;
    END LOOP;
    IF after IS NULL THEN
        RETURN QUERY SELECT e.id, e.source_id, e.consumer_name, e.created_at FROM events e
            WHERE e.reconciled_date IS NULL;
    ELSE
        RETURN QUERY SELECT e.id, e.source_id, e.consumer_name, e.created_at FROM events e
            WHERE e.reconciled_date IS NULL AND e.consumer_name > after;
    END IF;
END
$$;
