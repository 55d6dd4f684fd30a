-- txbox SQLite schema, version 4 ({{prefix}} as in 0001_init.sql): ordering keys without a
-- per-key index of the backlog. Version 3 indexed every unsent keyed event by (ordering_key,
-- key_seq): an enqueue of 100 events over 100 keys wrote 100 scattered pages of that index,
-- and a claim probed it for every keyed row it walked past, so with few keys each claim walked
-- the whole backlog of keys whose head was in flight.
--
-- Version 4 chains the live (pending or publishing) events of each key in seq order: key_prev
-- is the seq of the key's previous live event, NULL for its first one, the head. The claim
-- walks outbox_claimable_heads (live rows with no previous live event of their key: unkeyed
-- rows and heads), so it costs the claimable heads plus the heads in flight, not the backlog.
-- The triggers below keep the chain in the statement that changes a status, whatever the
-- statement: a new event joins the end of its key's chain ({{prefix}}outbox_keys.tail_seq), an
-- event that leaves the live statuses (sent, failed, deleted) hands its key_prev to the next
-- one, an event that comes back (requeueFailed, an unfenced retryLater or markAsPublishing)
-- finds its place by walking its key's chain back from the tail. key_prev of a row that is
-- not live means nothing (it is rewritten when the row comes back), and every index and
-- lookup of the chain keeps to live rows. Write the outbox through the store (or keep
-- status, seq, ordering_key and key_prev as the triggers do): the claim trusts the chain.
--
-- key_seq of a new event is its seq (the statement sets both): AUTOINCREMENT hands seqs out
-- in commit order (one writer) and never reuses one, even after cleanup, so no counter is
-- bumped per key. The sequence is moved past every key_seq version 3 gave, so a key goes on
-- above its stored events; last_key_seq stays up to date for a downgrade.
--
-- A dead letter holds its key under keyedDeadLetters 'block' through outbox_key_failed, which
-- holds only failed keyed rows.

ALTER TABLE {{prefix}}outbox ADD COLUMN key_prev INTEGER;

ALTER TABLE {{prefix}}outbox_keys ADD COLUMN tail_seq INTEGER;

UPDATE sqlite_sequence
SET seq = (SELECT max(last_key_seq) FROM {{prefix}}outbox_keys)
WHERE name = '{{prefix}}outbox' AND seq < (SELECT max(last_key_seq) FROM {{prefix}}outbox_keys);

INSERT INTO sqlite_sequence (name, seq)
SELECT '{{prefix}}outbox', max(last_key_seq) FROM {{prefix}}outbox_keys
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '{{prefix}}outbox')
HAVING max(last_key_seq) IS NOT NULL;

UPDATE {{prefix}}outbox SET key_prev = chain.prev
FROM (
  SELECT seq, lag(seq) OVER (PARTITION BY ordering_key ORDER BY key_seq) AS prev
  FROM {{prefix}}outbox
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'publishing')
) AS chain
WHERE {{prefix}}outbox.seq = chain.seq AND chain.prev IS NOT NULL;

UPDATE {{prefix}}outbox_keys SET tail_seq = (
  SELECT max(seq) FROM {{prefix}}outbox
  WHERE ordering_key = {{prefix}}outbox_keys.ordering_key AND status IN ('pending', 'publishing')
);

DROP INDEX IF EXISTS {{prefix}}outbox_key_holds;

DROP INDEX IF EXISTS {{prefix}}outbox_claimable;

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_claimable_heads
  ON {{prefix}}outbox (seq) WHERE status IN ('pending', 'publishing') AND key_prev IS NULL;

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_key_next
  ON {{prefix}}outbox (key_prev) WHERE key_prev IS NOT NULL AND status IN ('pending', 'publishing');

CREATE INDEX IF NOT EXISTS {{prefix}}outbox_key_failed
  ON {{prefix}}outbox (ordering_key, key_seq) WHERE ordering_key IS NOT NULL AND status = 'failed';

CREATE TRIGGER IF NOT EXISTS {{prefix}}outbox_key_join AFTER INSERT ON {{prefix}}outbox
WHEN new.ordering_key IS NOT NULL AND new.status IN ('pending', 'publishing')
BEGIN
  UPDATE {{prefix}}outbox
  SET key_prev = (SELECT tail_seq FROM {{prefix}}outbox_keys WHERE ordering_key = new.ordering_key)
  WHERE seq = new.seq
    AND key_prev IS NOT (SELECT tail_seq FROM {{prefix}}outbox_keys WHERE ordering_key = new.ordering_key); -- and it becomes the tail:
  INSERT INTO {{prefix}}outbox_keys (ordering_key, last_key_seq, tail_seq)
  VALUES (new.ordering_key, coalesce(new.key_seq, new.seq), new.seq)
  ON CONFLICT (ordering_key) DO UPDATE
  SET last_key_seq = max(last_key_seq, excluded.last_key_seq), tail_seq = excluded.tail_seq; -- (no line of a trigger ends with its semicolon: the scripts split there)
END;

CREATE TRIGGER IF NOT EXISTS {{prefix}}outbox_key_leave AFTER UPDATE OF status ON {{prefix}}outbox
WHEN old.ordering_key IS NOT NULL AND old.status IN ('pending', 'publishing')
  AND new.status NOT IN ('pending', 'publishing')
BEGIN
  UPDATE {{prefix}}outbox SET key_prev = old.key_prev
  WHERE key_prev = old.seq AND status IN ('pending', 'publishing'); -- and if it was the tail, its previous one is:
  UPDATE {{prefix}}outbox_keys SET tail_seq = old.key_prev
  WHERE ordering_key = old.ordering_key AND tail_seq = old.seq; -- (each line of a trigger ends in a comment or END)
END;

CREATE TRIGGER IF NOT EXISTS {{prefix}}outbox_key_delete AFTER DELETE ON {{prefix}}outbox
WHEN old.ordering_key IS NOT NULL AND old.status IN ('pending', 'publishing')
BEGIN
  UPDATE {{prefix}}outbox SET key_prev = old.key_prev
  WHERE key_prev = old.seq AND status IN ('pending', 'publishing'); -- and if it was the tail, its previous one is:
  UPDATE {{prefix}}outbox_keys SET tail_seq = old.key_prev
  WHERE ordering_key = old.ordering_key AND tail_seq = old.seq; -- (each line of a trigger ends in a comment or END)
END;

CREATE TRIGGER IF NOT EXISTS {{prefix}}outbox_key_return AFTER UPDATE OF status ON {{prefix}}outbox
WHEN new.ordering_key IS NOT NULL AND old.status NOT IN ('pending', 'publishing')
  AND new.status IN ('pending', 'publishing')
BEGIN
  UPDATE {{prefix}}outbox SET key_prev = (
    WITH RECURSIVE walk (seq, prev) AS (
      SELECT seq, key_prev FROM {{prefix}}outbox
      WHERE seq = (SELECT tail_seq FROM {{prefix}}outbox_keys WHERE ordering_key = new.ordering_key)
      UNION ALL
      SELECT live.seq, live.key_prev FROM {{prefix}}outbox AS live JOIN walk ON live.seq = walk.prev
      WHERE walk.seq > new.seq
    )
    SELECT max(seq) FROM walk WHERE seq < new.seq
  )
  WHERE seq = new.seq; -- its next live event follows it now:
  UPDATE {{prefix}}outbox SET key_prev = new.seq WHERE seq = (
    WITH RECURSIVE walk (seq, prev) AS (
      SELECT seq, key_prev FROM {{prefix}}outbox
      WHERE seq = (SELECT tail_seq FROM {{prefix}}outbox_keys WHERE ordering_key = new.ordering_key)
      UNION ALL
      SELECT live.seq, live.key_prev FROM {{prefix}}outbox AS live JOIN walk ON live.seq = walk.prev
      WHERE walk.seq > new.seq
    )
    SELECT min(seq) FROM walk WHERE seq > new.seq
  ); -- and if it is the last one, it is the tail:
  INSERT INTO {{prefix}}outbox_keys (ordering_key, last_key_seq, tail_seq)
  VALUES (new.ordering_key, coalesce(new.key_seq, new.seq), new.seq)
  ON CONFLICT (ordering_key) DO UPDATE
  SET tail_seq = CASE WHEN tail_seq IS NULL OR tail_seq < excluded.tail_seq THEN excluded.tail_seq ELSE tail_seq END; -- (each line of a trigger ends in a comment or END)
END;
