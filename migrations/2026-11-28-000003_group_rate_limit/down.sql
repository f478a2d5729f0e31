ALTER TABLE auth_group DROP COLUMN rate_limit;
