-- txbox SQLite schema, version 2, for the default table prefix txbox_.
-- The inbox keys on event_id alone: (stream, stream_seq) stays recorded but is no longer a
-- unique key, because a JetStream stream deleted and re-created under the same name restarts
-- its sequence at 1, and version 1 then took every new event at a reused sequence for a
-- duplicate. createSqliteStore({ db }).migrate() runs this after 001_init.sql.

DROP INDEX IF EXISTS txbox_inbox_stream_seq;
