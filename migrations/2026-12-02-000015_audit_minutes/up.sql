-- The audit counts requests per minute (AUDIT_DETAIL=minutes, the
-- default): one row per minute, user, credential, client, endpoint,
-- method, feed, status and columns read, which every replica's writer adds
-- into. `minute_key` names that row (a digest of those fields); NULL in a
-- row of one request (AUDIT_DETAIL=requests), which never conflicts and
-- is left out of the index (no index entry for each of millions of rows).
ALTER TABLE access_log ADD COLUMN minute_key VARCHAR(32);
CREATE UNIQUE INDEX access_log_minute ON access_log (minute_key) WHERE minute_key IS NOT NULL;
-- `duration_ms` is the rows' total; this is the longest of them.
ALTER TABLE access_log ADD COLUMN duration_max_ms DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE access_log SET duration_max_ms = duration_ms;
-- The rows read, from `read_from` to `read_to` (NULL: to the end), the
-- span of every read a row counts; numbers so that replicas can widen it.
ALTER TABLE access_log ADD COLUMN read_from BIGINT;
ALTER TABLE access_log ADD COLUMN read_to BIGINT;
