-- Where a token was last used from (the client's address as
-- TRUSTED_PROXIES defines it), written with `last_used_at`: at most once a
-- minute per token and process, never per request.
ALTER TABLE authtoken_token ADD COLUMN last_used_from VARCHAR(64);
