-- Undoes 0001_outbox.sql (placeholders as there): drops the outbox table with its keys.
-- Not run by migrate(); printed by txbox-migrations print --down, which then drops
-- {{prefix}}schema_version too.
DROP TABLE IF EXISTS `{{prefix}}outbox`
