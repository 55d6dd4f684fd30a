-- Undoes 0004_ordering_keys.sql (placeholders as in 0001_outbox.sql): drops the key counters,
-- the head index and both columns. Every event's ordering key and key_seq are lost: run it
-- only when no keyed event is still pending, or when their order no longer matters.
DROP TABLE IF EXISTS `{{prefix}}outbox_keys`;
ALTER TABLE `{{prefix}}outbox` DROP KEY `ix_key_head`, DROP COLUMN `key_seq`, DROP COLUMN `ordering_key`
