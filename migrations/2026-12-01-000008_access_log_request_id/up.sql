-- The request's id (`X-Request-Id`), to find it in the access log and
-- upstream; NULL in rows made before, and in rows that count several
-- refusals together.
ALTER TABLE access_log ADD COLUMN request_id VARCHAR(128);
