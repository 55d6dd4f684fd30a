-- Undoes 0005_key_heads.sql (placeholders as in 0001_outbox.sql): claims walk the pending
-- events again. Run it together with a downgrade of every process to a release before
-- schema version 5.
ALTER TABLE `{{prefix}}outbox_keys` DROP KEY `ix_ready`, DROP COLUMN `version`, DROP COLUMN `held`, DROP COLUMN `head_at`
