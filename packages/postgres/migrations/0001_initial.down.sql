-- Undoes 0001_initial.sql (placeholders as there): drops the two tables, and with them their
-- indexes, constraints and identity sequences. Not run by migrate(); printed by
-- txbox-migrations print --down, which then drops {{prefix}}schema_version too. The schema
-- stays: it may hold other prefixes' tables, or yours.

DROP TABLE IF EXISTS "{{schema}}"."{{prefix}}inbox";

DROP TABLE IF EXISTS "{{schema}}"."{{prefix}}outbox";
