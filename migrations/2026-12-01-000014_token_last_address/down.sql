ALTER TABLE authtoken_token DROP COLUMN last_used_from;
