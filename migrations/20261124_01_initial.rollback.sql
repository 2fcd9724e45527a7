DROP TABLE server_instances;
DROP TABLE status_events;
DROP TABLE events;
DROP TABLE resources;
DROP TABLE consumers;
