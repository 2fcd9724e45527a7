DROP FUNCTION pending_events(text[]);
