DROP FUNCTION pending_events(integer);
