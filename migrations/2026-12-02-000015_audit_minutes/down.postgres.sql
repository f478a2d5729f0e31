ALTER TABLE access_log ADD COLUMN read_rows VARCHAR(64);
UPDATE access_log SET read_rows = read_from::TEXT || '..' || COALESCE(read_to::TEXT, '')
    WHERE read_from IS NOT NULL;
ALTER SEQUENCE access_log_id_seq AS INTEGER;
ALTER TABLE access_log ALTER COLUMN id TYPE INTEGER;
