DROP FUNCTION pending_events();
