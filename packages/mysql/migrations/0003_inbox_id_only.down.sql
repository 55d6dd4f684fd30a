-- Undoes 0003_inbox_id_only.sql (placeholders as in 0001_outbox.sql): (stream, stream_seq) is
-- a unique key of the inbox again, as version 2 had it. Fails if two stored deliveries share a
-- stream position (a stream re-created under its name since): delete the older one first, or
-- do not go back to version 2.
ALTER TABLE `{{prefix}}inbox` ADD UNIQUE KEY `ux_stream_seq` (`stream`, `stream_seq`)
