-- SQLite: a trigger per table and event, raising its counter once a row.
CREATE TRIGGER auth_user_insert_changes_auth AFTER INSERT ON auth_user
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_update_changes_auth AFTER UPDATE OF username, password, is_active, is_staff, is_superuser ON auth_user
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_delete_changes_auth AFTER DELETE ON auth_user
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_group_insert_changes_auth AFTER INSERT ON auth_group
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_group_update_changes_auth AFTER UPDATE ON auth_group
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_group_delete_changes_auth AFTER DELETE ON auth_group
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_groups_insert_changes_auth AFTER INSERT ON auth_user_groups
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_groups_update_changes_auth AFTER UPDATE ON auth_user_groups
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_groups_delete_changes_auth AFTER DELETE ON auth_user_groups
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_group_permissions_insert_changes_auth AFTER INSERT ON auth_group_permissions
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_group_permissions_update_changes_auth AFTER UPDATE ON auth_group_permissions
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_group_permissions_delete_changes_auth AFTER DELETE ON auth_group_permissions
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_user_permissions_insert_changes_auth AFTER INSERT ON auth_user_user_permissions
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_user_permissions_update_changes_auth AFTER UPDATE ON auth_user_user_permissions
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER auth_user_user_permissions_delete_changes_auth AFTER DELETE ON auth_user_user_permissions
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER feed_grant_insert_changes_auth AFTER INSERT ON feed_grant
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER feed_grant_update_changes_auth AFTER UPDATE ON feed_grant
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER feed_grant_delete_changes_auth AFTER DELETE ON feed_grant
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER authtoken_token_insert_changes_auth AFTER INSERT ON authtoken_token
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER authtoken_token_update_changes_auth AFTER UPDATE OF user_id, digest, expires_at, revoked, scopes, allowed_networks ON authtoken_token
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER authtoken_token_delete_changes_auth AFTER DELETE ON authtoken_token
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER session_update_changes_sessions AFTER UPDATE OF state, user_id ON session
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 2; END;
CREATE TRIGGER session_delete_changes_sessions AFTER DELETE ON session
BEGIN UPDATE auth_change SET n = n + 1 WHERE id = 2; END;
