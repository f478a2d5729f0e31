UPDATE access_log SET
    read_from = COALESCE(CAST(NULLIF(substr(read_rows, 1, instr(read_rows, '..') - 1), '') AS INTEGER), 0),
    read_to = CAST(NULLIF(substr(read_rows, instr(read_rows, '..') + 2), '') AS INTEGER)
    WHERE read_rows IS NOT NULL;
ALTER TABLE access_log DROP COLUMN read_rows;
