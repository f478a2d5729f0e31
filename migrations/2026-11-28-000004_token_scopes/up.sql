-- A token may do less than its user: only its scopes ("lbasedb.view_data=xy",
-- comma-separated; a codename alone holds on every feed), and only from its
-- networks (CIDRs, comma-separated). NULL: no such restriction.
ALTER TABLE authtoken_token ADD COLUMN scopes TEXT;
ALTER TABLE authtoken_token ADD COLUMN allowed_networks TEXT;
