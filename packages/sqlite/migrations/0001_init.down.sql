-- Undoes 0001_init.sql ({{prefix}} as there): drops the two tables; their indexes and their
-- rows of sqlite_sequence (AUTOINCREMENT's counters) go with them. Not run by migrate();
-- printed by txbox-migrations print --down, which then drops {{prefix}}schema_version too.
-- sqlite_sequence itself belongs to SQLite, which keeps it once created.

DROP TABLE IF EXISTS {{prefix}}inbox;

DROP TABLE IF EXISTS {{prefix}}outbox;
