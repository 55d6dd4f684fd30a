-- Undoes 0004_ordering.sql (placeholders as in 0001_initial.sql). The ordering keys and
-- key_seqs of stored events are lost, and with them the counters: pending keyed events are
-- then claimed without regard to order. A store of this release reads and writes these
-- columns in every statement: run the release that shipped version 3 after going back.

DROP INDEX IF EXISTS "{{schema}}"."{{prefix}}outbox_key_head_idx";

DROP TABLE IF EXISTS "{{schema}}"."{{prefix}}outbox_keys";

ALTER TABLE "{{schema}}"."{{prefix}}outbox"
  DROP COLUMN IF EXISTS key_seq,
  DROP COLUMN IF EXISTS ordering_key;
