-- Undoes 0005_unkeyed_claimable.sql (placeholders as in 0001_initial.sql). A store of this
-- release claims unkeyed events through this index: run the release that shipped version 4
-- after going back.

DROP INDEX IF EXISTS "{{schema}}"."{{prefix}}outbox_unkeyed_claimable_idx";
