-- txbox PostgreSQL schema, version 2 (placeholders as in 0001_initial.sql).
--
-- The inbox keys on event_id alone. Version 1 made (stream, stream_seq) a second unique key,
-- so after a JetStream stream was deleted and re-created under the same name (its sequence
-- restarts at 1) every new event at a reused sequence was taken for a duplicate and never
-- handled. The columns stay, recorded for diagnosis; nothing queries by them, so no index
-- replaces the constraint.

ALTER TABLE "{{schema}}"."{{prefix}}inbox" DROP CONSTRAINT IF EXISTS "{{prefix}}inbox_stream_key";
