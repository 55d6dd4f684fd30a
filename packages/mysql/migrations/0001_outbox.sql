-- txbox outbox table, schema version 1.
-- Placeholders: {{prefix}} = your table prefix (default txbox_);
-- {{id_collation}} = utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8.0.17+.
-- seq is the enqueue order (FIFO even when many events share one enqueued_at).
-- ix_claim: (status, seq) lets "WHERE status = ? ... ORDER BY seq LIMIT n FOR UPDATE
-- SKIP LOCKED" walk the index in seq order and stop after n matches, so a claimer locks
-- the rows it returns and not every due row; available_at and lease_until ride along so
-- the time filter is checked in the index.
CREATE TABLE IF NOT EXISTS `{{prefix}}outbox` (
  `seq` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `event_id` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NOT NULL,
  `subject` VARCHAR(500) NOT NULL,
  `payload` LONGTEXT NOT NULL,
  `headers` LONGTEXT NULL,
  `status` VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `enqueued_at` DATETIME(3) NOT NULL,
  `available_at` DATETIME(3) NOT NULL,
  `sent_at` DATETIME(3) NULL,
  `error_message` LONGTEXT NULL,
  `retry_count` INT UNSIGNED NOT NULL DEFAULT 0,
  `claimed_at` DATETIME(3) NULL,
  `claimed_by` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NULL,
  `lease_until` DATETIME(3) NULL,
  PRIMARY KEY (`seq`),
  UNIQUE KEY `ux_event_id` (`event_id`),
  KEY `ix_claim` (`status`, `seq`, `available_at`, `lease_until`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
