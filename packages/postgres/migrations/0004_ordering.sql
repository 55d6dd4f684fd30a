-- txbox PostgreSQL schema, version 4 (placeholders as in 0001_initial.sql).
--
-- Ordering keys (docs/CONTRACT.md §2 "Ordering keys"). An outbox event may carry an
-- ordering_key; the store numbers the events of one key (key_seq) from a per-key counter, and
-- a claim takes a keyed event only while no earlier event of its key is unsent. Both columns
-- are NULL on unkeyed events and on every row written before this version, so an existing
-- outbox upgrades in place: adding a nullable column without a default rewrites nothing.
--
-- COLLATE "C": keys compare byte for byte ('A' and 'a' are two keys) whatever the
-- database's default collation, and the index below orders them the same way.
ALTER TABLE "{{schema}}"."{{prefix}}outbox"
  ADD COLUMN IF NOT EXISTS ordering_key text COLLATE "C",
  ADD COLUMN IF NOT EXISTS key_seq      bigint;

-- The per-key counter: the last key_seq handed out for the key. It outlives the key's events
-- (cleanup deletes sent rows, never this), so a key_seq is never reused. An enqueue of a
-- keyed event upserts its key's row and holds that row lock until its transaction ends: a
-- second transaction enqueuing the same key waits, so key_seq grows in commit order.
CREATE TABLE IF NOT EXISTS "{{schema}}"."{{prefix}}outbox_keys" (
  ordering_key text COLLATE "C" NOT NULL,
  last_seq     bigint NOT NULL,
  CONSTRAINT "{{prefix}}outbox_keys_pkey" PRIMARY KEY (ordering_key)
);

-- The claim's head check: "is there an unsent event of this key with a lower key_seq?" is
-- one short range probe here. Sent rows (most of the table) and unkeyed rows never enter it.
-- Failed rows do: they hold their key when the claim says keyedDeadLetters: 'block'.
CREATE INDEX IF NOT EXISTS "{{prefix}}outbox_key_head_idx"
  ON "{{schema}}"."{{prefix}}outbox" (ordering_key, key_seq)
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'publishing', 'failed');
