-- txbox inbox table, schema version 2. Placeholders as in 0001_outbox.sql.
-- (stream, stream_seq) is a second unique key of a delivery: JetStream may redeliver one
-- message under a new id. Rows without a stream (NULL) never collide.
-- ix_status_received serves getFailedEvents (oldest received first), resetStale and cleanup.
CREATE TABLE IF NOT EXISTS `{{prefix}}inbox` (
  `seq` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `event_id` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NOT NULL,
  `subject` VARCHAR(500) NOT NULL,
  `payload` LONGTEXT NOT NULL,
  `headers` LONGTEXT NULL,
  `stream` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NULL,
  `stream_seq` BIGINT UNSIGNED NULL,
  `status` VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  `received_at` DATETIME(3) NOT NULL,
  `processed_at` DATETIME(3) NULL,
  `deliveries` INT UNSIGNED NOT NULL,
  `error_message` LONGTEXT NULL,
  `claimed_at` DATETIME(3) NULL,
  `claimed_by` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {{id_collation}} NULL,
  `lease_until` DATETIME(3) NULL,
  PRIMARY KEY (`seq`),
  UNIQUE KEY `ux_event_id` (`event_id`),
  UNIQUE KEY `ux_stream_seq` (`stream`, `stream_seq`),
  KEY `ix_status_received` (`status`, `received_at`, `seq`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
