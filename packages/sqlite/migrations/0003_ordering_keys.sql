-- txbox SQLite schema, version 3 ({{prefix}} as in 0001_init.sql): ordering keys. An event may
-- carry an ordering_key (stored as given: TEXT compares with BINARY collation, so 'A' and 'a'
-- are two keys) and its key_seq, its position among the events of that key. Both stay NULL for
-- an event without a key, so existing rows are unchanged and an existing deployment upgrades
-- in place.
--
-- {{prefix}}outbox_keys holds the last key_seq given per key. The enqueue bumps it in the same
-- transaction as its INSERT; SQLite has one writer, so key_seqs follow commit order. cleanup
-- never touches it, so a key's sequence never restarts after its events were deleted.
--
-- {{prefix}}outbox_key_holds indexes exactly the events that can hold their key (not yet sent),
-- so the claim's head check ("no event of this key with a lower key_seq holds it") is one
-- index probe; the claim names it with INDEXED BY, so keep its name.

ALTER TABLE {{prefix}}outbox ADD COLUMN ordering_key TEXT;

ALTER TABLE {{prefix}}outbox ADD COLUMN key_seq INTEGER;

CREATE TABLE IF NOT EXISTS {{prefix}}outbox_keys (
  ordering_key TEXT PRIMARY KEY,
  last_key_seq INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_key_holds
  ON {{prefix}}outbox (ordering_key, key_seq)
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'publishing', 'failed');
