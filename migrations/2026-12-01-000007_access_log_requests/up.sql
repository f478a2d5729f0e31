-- How many requests a row stands for: requests refused before anyone was
-- authenticated are counted per client, second, endpoint, method and
-- status in one row, so that a flood of them costs a few rows a second.
ALTER TABLE access_log ADD COLUMN requests BIGINT NOT NULL DEFAULT 1;
