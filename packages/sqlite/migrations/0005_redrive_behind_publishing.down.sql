-- Undoes 0005_redrive_behind_publishing.sql ({{prefix}} as in 0001_init.sql): version 4's
-- trigger comes back, which puts a returning event back in seq order, in front of a publishing
-- event of its key if need be. Version 4's walk expects each key's chain in seq order, so the
-- chains are rebuilt that way first (version 5 may have put a redriven event behind a
-- publishing one with a higher seq).

DROP TRIGGER IF EXISTS {{prefix}}outbox_key_return;

UPDATE {{prefix}}outbox SET key_prev = chain.prev
FROM (
  SELECT seq, lag(seq) OVER (PARTITION BY ordering_key ORDER BY seq) AS prev
  FROM {{prefix}}outbox
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'publishing')
) AS chain
WHERE {{prefix}}outbox.seq = chain.seq AND {{prefix}}outbox.key_prev IS NOT chain.prev;

UPDATE {{prefix}}outbox_keys SET tail_seq = (
  SELECT max(seq) FROM {{prefix}}outbox
  WHERE ordering_key = {{prefix}}outbox_keys.ordering_key AND status IN ('pending', 'publishing')
);

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
