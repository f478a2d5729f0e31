DROP TABLE write_usage;
ALTER TABLE auth_group DROP COLUMN write_quota;
ALTER TABLE access_log DROP COLUMN read_rows;
ALTER TABLE access_log DROP COLUMN read_columns;
ALTER TABLE feed_grant DROP COLUMN grant_rows;
ALTER TABLE feed_grant DROP COLUMN grant_columns;
