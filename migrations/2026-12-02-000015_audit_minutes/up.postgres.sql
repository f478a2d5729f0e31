-- 64-bit ids: one id a new row, and a client naming a new feed each time
-- makes a new row a request; 32 bits would run out within days at full
-- speed, and the audit would stop. (SQLite's are 64 bits already.)
ALTER TABLE access_log ALTER COLUMN id TYPE BIGINT;
ALTER SEQUENCE access_log_id_seq AS BIGINT;
UPDATE access_log SET
    read_from = COALESCE(NULLIF(split_part(read_rows, '..', 1), '')::BIGINT, 0),
    read_to = NULLIF(split_part(read_rows, '..', 2), '')::BIGINT
    WHERE read_rows IS NOT NULL;
ALTER TABLE access_log DROP COLUMN read_rows;
