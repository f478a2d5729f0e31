ALTER TABLE access_log DROP COLUMN request_id;
