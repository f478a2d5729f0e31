-- A group's request rate (DRF's "600/min" form) overriding USER_RATE_LIMIT
-- for its members; the most generous of a user's groups wins.
ALTER TABLE auth_group ADD COLUMN rate_limit TEXT;
