ALTER TABLE authtoken_token DROP COLUMN allowed_networks;
ALTER TABLE authtoken_token DROP COLUMN scopes;
