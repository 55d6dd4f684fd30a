-- txbox outbox table, schema version 1.
-- Placeholders: {{prefix}} = your table prefix (default txbox_);
-- {{id_collation}} = utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8.0.17+.
-- seq is the enqueue order (FIFO even when many events share one enqueued_at).
-- The claim's locking reads must not lock rows they do not return (a locking read through
-- a secondary index keeps the lock of every record it examines, even under READ COMMITTED):
-- ix_claim (status, seq): "status = 'pending' AND available_at <= ? ORDER BY seq LIMIT n"
--   walks due rows in seq order and stops after n matches; only pending rows that are not
--   due yet and come first are stepped over. An index led by available_at would instead
--   sort every due row and lock them all.
-- ix_lease (status, lease_until): the expired-lease range holds only rows that match.
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
  KEY `ix_claim` (`status`, `seq`),
  KEY `ix_lease` (`status`, `lease_until`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
