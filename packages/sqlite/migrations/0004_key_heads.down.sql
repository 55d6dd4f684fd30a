-- Undoes 0004_key_heads.sql ({{prefix}} as in 0001_init.sql): the chain's triggers, indexes and
-- columns go, and version 3's claimable and key_holds indexes come back. last_key_seq was kept
-- up to date by version 4, so version 3's counter goes on above every stored key_seq.

DROP TRIGGER IF EXISTS {{prefix}}outbox_key_return;

DROP TRIGGER IF EXISTS {{prefix}}outbox_key_delete;

DROP TRIGGER IF EXISTS {{prefix}}outbox_key_leave;

DROP TRIGGER IF EXISTS {{prefix}}outbox_key_join;

DROP INDEX IF EXISTS {{prefix}}outbox_key_failed;

DROP INDEX IF EXISTS {{prefix}}outbox_key_next;

DROP INDEX IF EXISTS {{prefix}}outbox_claimable_heads;

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_claimable
  ON {{prefix}}outbox (seq) WHERE status IN ('pending', 'publishing');

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_key_holds
  ON {{prefix}}outbox (ordering_key, key_seq)
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'publishing', 'failed');

ALTER TABLE {{prefix}}outbox_keys DROP COLUMN tail_seq;

ALTER TABLE {{prefix}}outbox DROP COLUMN key_prev;
