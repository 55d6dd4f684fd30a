-- Undoes 0002_inbox.sql (placeholders as in 0001_outbox.sql): drops the inbox table with its keys.
DROP TABLE IF EXISTS `{{prefix}}inbox`
