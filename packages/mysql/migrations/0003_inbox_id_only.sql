-- txbox inbox, schema version 3. Placeholders as in 0001_outbox.sql.
-- The inbox keys on event_id alone. Version 2 made (stream, stream_seq) a second unique key,
-- so after a JetStream stream was deleted and re-created under the same name (its sequence
-- restarts at 1) every new event at a reused sequence was taken for a duplicate and never
-- handled. The columns stay, recorded for diagnosis; nothing queries by them, so no index
-- replaces the key. MySQL has no DROP INDEX IF EXISTS: migrate() counts "the key is already
-- gone" (error 1091) as this step done.
ALTER TABLE `{{prefix}}inbox` DROP INDEX `ux_stream_seq`
