UPDATE access_log SET
    read_from = COALESCE(NULLIF(split_part(read_rows, '..', 1), '')::BIGINT, 0),
    read_to = NULLIF(split_part(read_rows, '..', 2), '')::BIGINT
    WHERE read_rows IS NOT NULL;
ALTER TABLE access_log DROP COLUMN read_rows;
