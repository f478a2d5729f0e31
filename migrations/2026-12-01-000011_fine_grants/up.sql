-- A grant may cover some columns and a window of rows only (reads:
-- `lbasedb.view_data=sensors[t,temp]@-100000..`): the columns, sorted and
-- comma-separated, and the window as `FROM..TO`; NULL covers all.
ALTER TABLE feed_grant ADD COLUMN grant_columns TEXT;
ALTER TABLE feed_grant ADD COLUMN grant_rows VARCHAR(64);

-- What a read read: its columns (comma-separated, as named) and rows
-- (`FROM..TO`).
ALTER TABLE access_log ADD COLUMN read_columns TEXT;
ALTER TABLE access_log ADD COLUMN read_rows VARCHAR(64);

-- A group's write quota per member and day ("10000000rows/day,2GB/day"),
-- and what each user wrote each day (UTC), counted as writes are
-- acknowledged; every replica adds into the same row.
ALTER TABLE auth_group ADD COLUMN write_quota TEXT;
CREATE TABLE write_usage (
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    day VARCHAR(10) NOT NULL,
    rows_written BIGINT NOT NULL DEFAULT 0,
    bytes_written BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);
