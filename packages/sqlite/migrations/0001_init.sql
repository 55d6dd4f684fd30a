-- txbox SQLite schema, version 1. {{prefix}} is the table prefix (createSqliteStore's
-- tablePrefix, txbox_ by default): migrate() substitutes it, runs this file under BEGIN IMMEDIATE
-- and records version 1 in {{prefix}}schema_version. With your own migration tool, replace every
-- {{prefix}} with your prefix and apply the files in order. Needs SQLite >= 3.37 (STRICT). Also set
-- PRAGMA journal_mode = WAL once on a file database (migrate() does).
--
-- seq INTEGER PRIMARY KEY AUTOINCREMENT is the enqueue order: SQLite has one writer at a time,
-- so seqs are handed out in commit order and FIFO holds even with a frozen clock. AUTOINCREMENT
-- never reuses a seq after a delete (plain rowids can, once the newest rows are cleaned up), so a
-- seq names one event for ever in logs and external cursors. Datetimes are INTEGER epoch
-- milliseconds: exact, UTC and sortable. STRICT rejects a value of the wrong type instead of
-- storing it. The partial indexes hold only the rows each hot query scans (claimable rows in seq
-- order, sent rows by sent_at, processed inbox rows); claim and cleanup name them with INDEXED BY,
-- so keep their names.

CREATE TABLE IF NOT EXISTS {{prefix}}outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  subject TEXT NOT NULL,
  payload TEXT NOT NULL,
  headers TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'publishing', 'sent', 'failed')),
  enqueued_at INTEGER NOT NULL,
  sent_at INTEGER,
  error_message TEXT,
  retry_count INTEGER NOT NULL DEFAULT 0,
  available_at INTEGER NOT NULL,
  claimed_at INTEGER,
  claimed_by TEXT,
  lease_until INTEGER
) STRICT;

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_claimable
  ON {{prefix}}outbox (seq) WHERE status IN ('pending', 'publishing');

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_status ON {{prefix}}outbox (status, seq);

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_sent ON {{prefix}}outbox (sent_at) WHERE status = 'sent';

CREATE TABLE IF NOT EXISTS {{prefix}}inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  subject TEXT NOT NULL,
  payload TEXT NOT NULL,
  headers TEXT,
  stream TEXT,
  stream_seq INTEGER,
  status TEXT NOT NULL CHECK (status IN ('processing', 'processed', 'failed')),
  received_at INTEGER NOT NULL,
  processed_at INTEGER,
  deliveries INTEGER NOT NULL DEFAULT 1,
  error_message TEXT,
  claimed_at INTEGER,
  claimed_by TEXT,
  lease_until INTEGER
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}inbox_stream_seq
  ON {{prefix}}inbox (stream, stream_seq) WHERE stream IS NOT NULL AND stream_seq IS NOT NULL;

CREATE INDEX IF NOT EXISTS {{prefix}}inbox_status ON {{prefix}}inbox (status, received_at, seq);

CREATE INDEX IF NOT EXISTS {{prefix}}inbox_processed
  ON {{prefix}}inbox (processed_at) WHERE status = 'processed';
