ALTER TABLE access_log DROP COLUMN requests;
