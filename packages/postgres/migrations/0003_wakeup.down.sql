-- Undoes 0003_wakeup.sql (placeholders as in 0001_initial.sql). A store of this release with
-- notify: 'waiting' (the default) cannot enqueue without the table: set notify to 'always'
-- or 'off' before going back to version 2.

DROP TABLE IF EXISTS "{{schema}}"."{{prefix}}wakeup";
