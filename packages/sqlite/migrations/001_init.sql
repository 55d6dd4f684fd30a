-- txbox SQLite schema, version 1, for the default table prefix txbox_.
-- createSqliteStore({ db }).migrate() runs this same DDL (with your tablePrefix in place of txbox_)
-- and records the version in txbox_schema_version. If you run your own migration tool instead,
-- apply this file as is, or replace every txbox_ with your prefix. Needs SQLite >= 3.37 (STRICT).
-- Also set PRAGMA journal_mode = WAL once on a file database (migrate() does).

CREATE TABLE IF NOT EXISTS txbox_outbox (
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

CREATE INDEX IF NOT EXISTS txbox_outbox_claimable
  ON txbox_outbox (seq) WHERE status IN ('pending', 'publishing');

CREATE INDEX IF NOT EXISTS txbox_outbox_status ON txbox_outbox (status, seq);

CREATE INDEX IF NOT EXISTS txbox_outbox_sent ON txbox_outbox (sent_at) WHERE status = 'sent';

CREATE TABLE IF NOT EXISTS txbox_inbox (
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

CREATE UNIQUE INDEX IF NOT EXISTS txbox_inbox_stream_seq
  ON txbox_inbox (stream, stream_seq) WHERE stream IS NOT NULL AND stream_seq IS NOT NULL;

CREATE INDEX IF NOT EXISTS txbox_inbox_status ON txbox_inbox (status, received_at, seq);

CREATE INDEX IF NOT EXISTS txbox_inbox_processed
  ON txbox_inbox (processed_at) WHERE status = 'processed';
