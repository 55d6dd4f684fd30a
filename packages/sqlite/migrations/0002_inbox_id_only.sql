-- txbox SQLite schema, version 2 ({{prefix}} as in 0001_init.sql). The inbox keys on event_id
-- alone: (stream, stream_seq) stays recorded but is no longer a unique key, because a JetStream
-- stream deleted and re-created under the same name restarts its sequence at 1, and version 1
-- then took every new event at a reused sequence for a duplicate. Nothing queries by stream
-- position, so no index replaces it.

DROP INDEX IF EXISTS {{prefix}}inbox_stream_seq;
