ALTER TABLE access_log DROP COLUMN read_to;
ALTER TABLE access_log DROP COLUMN read_from;
ALTER TABLE access_log DROP COLUMN duration_max_ms;
DROP INDEX access_log_minute;
ALTER TABLE access_log DROP COLUMN minute_key;
