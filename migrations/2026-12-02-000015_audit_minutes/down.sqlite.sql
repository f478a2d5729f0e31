ALTER TABLE access_log ADD COLUMN read_rows VARCHAR(64);
UPDATE access_log SET read_rows = CAST(read_from AS TEXT) || '..' || COALESCE(CAST(read_to AS TEXT), '')
    WHERE read_from IS NOT NULL;
