-- Undoes 0003_ordering_keys.sql ({{prefix}} as in 0001_init.sql): the keys table, the head
-- index and both columns go, with every ordering key and key_seq stored (events stay, unkeyed).
-- Needs SQLite >= 3.35 (DROP COLUMN).

DROP INDEX IF EXISTS {{prefix}}outbox_key_holds;

DROP TABLE IF EXISTS {{prefix}}outbox_keys;

ALTER TABLE {{prefix}}outbox DROP COLUMN key_seq;

ALTER TABLE {{prefix}}outbox DROP COLUMN ordering_key;
