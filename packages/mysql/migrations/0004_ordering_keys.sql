-- txbox outbox, schema version 4: ordering keys (docs/CONTRACT.md §2 "Ordering keys").
-- Placeholders as in 0001_outbox.sql.
-- An event may carry an ordering_key; the store numbers the events of one key (key_seq) from
-- a per-key counter, and a claim takes a keyed event only while no earlier event of its key
-- is unsent. Both columns are NULL on unkeyed events and on every row written before this
-- version, so an existing outbox upgrades in place. The columns and the index are two
-- statements: added alone, the nullable columns are an instant change on MySQL 8 and
-- MariaDB, and the index is built online without rebuilding the table.
-- ordering_key is collated like event_id (binary, NO PAD): 'A', 'a' and 'a ' are three keys.
-- MySQL has no ADD COLUMN / ADD KEY IF NOT EXISTS: migrate() counts "the column or key is
-- already there" (errors 1060, 1061) as the step done.
ALTER TABLE `{{prefix}}outbox`
  ADD COLUMN `ordering_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NULL,
  ADD COLUMN `key_seq` BIGINT NULL;
-- The claim's head check asks, per blocking status, for the lowest key_seq of the candidate's
-- key: "ordering_key = ? AND status = ? ORDER BY key_seq LIMIT 1" reads one index entry,
-- however many sent events of the key are kept. Unkeyed rows share the NULL prefix, which
-- the check never looks up.
ALTER TABLE `{{prefix}}outbox` ADD KEY `ix_key_head` (`ordering_key`, `status`, `key_seq`);
-- The per-key counter: the last key_seq handed out for the key. It outlives the key's events
-- (cleanup deletes sent rows, never this), so a key_seq is never reused. An enqueue of a
-- keyed event upserts its key's row and holds that row lock until its transaction ends: a
-- second transaction enqueuing the same key waits, so key_seq grows in commit order.
CREATE TABLE IF NOT EXISTS `{{prefix}}outbox_keys` (
  `ordering_key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NOT NULL,
  `last_seq` BIGINT NOT NULL,
  PRIMARY KEY (`ordering_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
