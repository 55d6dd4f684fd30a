-- txbox PostgreSQL schema, version 1.
--
-- Placeholders: {{schema}} is the schema (default public) and {{prefix}} the table prefix
-- (default txbox_). `migrate()` substitutes them after validating both as identifiers
-- (^[A-Za-z_][A-Za-z0-9_]{0,62}$); if you apply this file with your own migration tool,
-- replace them yourself, e.g.
--   sed -e 's/{{schema}}/public/g' -e 's/{{prefix}}/txbox_/g' 0001_initial.sql | psql
-- The schema itself must exist (migrate() creates it when missing).
--
-- Timestamps are timestamptz: microsecond precision holds JavaScript milliseconds exactly,
-- and every value is written by the adapter from its injected clock, never by now().

CREATE TABLE IF NOT EXISTS "{{schema}}"."{{prefix}}outbox" (
  -- Enqueue order. The identity is assigned at insert time, so FIFO holds even when many
  -- events share one enqueued_at (a frozen clock, or one batch).
  seq           bigint GENERATED ALWAYS AS IDENTITY,
  event_id      text NOT NULL,
  subject       text NOT NULL,
  payload       text NOT NULL,
  headers       text,
  status        text NOT NULL,
  enqueued_at   timestamptz NOT NULL,
  sent_at       timestamptz,
  error_message text,
  retry_count   integer NOT NULL DEFAULT 0,
  available_at  timestamptz NOT NULL,
  claimed_at    timestamptz,
  claimed_by    text,
  lease_until   timestamptz,
  CONSTRAINT "{{prefix}}outbox_pkey" PRIMARY KEY (seq),
  CONSTRAINT "{{prefix}}outbox_event_id_key" UNIQUE (event_id),
  CONSTRAINT "{{prefix}}outbox_status_check"
    CHECK (status IN ('pending', 'publishing', 'sent', 'failed'))
);

-- The claim (and findPending, resetStale) walk only the live rows in enqueue order: a
-- partial index on seq that sent and failed rows never enter, so it stays small however
-- much history the table keeps, and ORDER BY seq LIMIT n stops after n due rows.
CREATE INDEX IF NOT EXISTS "{{prefix}}outbox_claimable_idx"
  ON "{{schema}}"."{{prefix}}outbox" (seq)
  WHERE status IN ('pending', 'publishing');

-- cleanup deletes old sent rows in batches; without this it would scan the whole table.
CREATE INDEX IF NOT EXISTS "{{prefix}}outbox_sent_idx"
  ON "{{schema}}"."{{prefix}}outbox" (sent_at)
  WHERE status = 'sent';

-- Dead letters listed oldest first.
CREATE INDEX IF NOT EXISTS "{{prefix}}outbox_failed_idx"
  ON "{{schema}}"."{{prefix}}outbox" (seq)
  WHERE status = 'failed';

CREATE TABLE IF NOT EXISTS "{{schema}}"."{{prefix}}inbox" (
  seq           bigint GENERATED ALWAYS AS IDENTITY,
  event_id      text NOT NULL,
  subject       text NOT NULL,
  payload       text NOT NULL,
  headers       text,
  stream        text,
  stream_seq    bigint,
  status        text NOT NULL,
  received_at   timestamptz NOT NULL,
  processed_at  timestamptz,
  deliveries    integer NOT NULL DEFAULT 1,
  error_message text,
  claimed_at    timestamptz,
  claimed_by    text,
  lease_until   timestamptz,
  CONSTRAINT "{{prefix}}inbox_pkey" PRIMARY KEY (seq),
  CONSTRAINT "{{prefix}}inbox_event_id_key" UNIQUE (event_id),
  -- (stream, stream_seq) is a second key of the same delivery: a redelivery under another
  -- event id conflicts here and is folded into the stored row. NULLs never conflict.
  CONSTRAINT "{{prefix}}inbox_stream_key" UNIQUE (stream, stream_seq),
  CONSTRAINT "{{prefix}}inbox_status_check"
    CHECK (status IN ('processing', 'processed', 'failed'))
);

-- cleanup of processed rows.
CREATE INDEX IF NOT EXISTS "{{prefix}}inbox_processed_idx"
  ON "{{schema}}"."{{prefix}}inbox" (processed_at)
  WHERE status = 'processed';

-- resetStale finds in-flight rows by claim time (claimed_at, or received_at without a claim).
CREATE INDEX IF NOT EXISTS "{{prefix}}inbox_processing_idx"
  ON "{{schema}}"."{{prefix}}inbox" ((COALESCE(claimed_at, received_at)))
  WHERE status = 'processing';

-- Failed events listed oldest received first.
CREATE INDEX IF NOT EXISTS "{{prefix}}inbox_failed_idx"
  ON "{{schema}}"."{{prefix}}inbox" (received_at, seq)
  WHERE status = 'failed';
