-- txbox PostgreSQL schema, version 5 (placeholders as in 0001_initial.sql).
--
-- The claim's walk of the unkeyed events (docs/CONTRACT.md §2 "Ordering keys"; issue 18):
-- it takes them in enqueue order from this index, so the pending events of keys in flight,
-- which the claim cannot take, never stand in front of them; walking them in the claimable
-- index cost a probe per blocked keyed event. Unkeyed live rows only: keyed rows are found
-- through the key-head index, and sent or failed rows never enter it.
CREATE INDEX IF NOT EXISTS "{{prefix}}outbox_unkeyed_claimable_idx"
  ON "{{schema}}"."{{prefix}}outbox" (seq)
  WHERE ordering_key IS NULL AND status IN ('pending', 'publishing');
