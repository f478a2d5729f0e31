-- State every replica must share.
--
-- auth_change: counters that changes raise in the same transaction as the
-- change (triggers, so the CLI, a replica, or SQL typed by hand all count):
-- row 1 for every change to who may do what, row 2 for a session's state
-- changed or a session ended. Each process polls them a few times a second
-- and clears its caches when they move: the hot path keeps its caches, and
-- a revocation or logout anywhere is enforced everywhere within the poll
-- interval. A token's last use, a user's last login and a session's
-- renewed expiry are not such changes, and leave the counters alone.
--
-- throttle: failed-login and bad-token counts, keyed by a digest (a
-- username field may hold a mistyped password), raised atomically by an
-- upsert, so that replicas count together.

CREATE TABLE auth_change (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id IN (1, 2)),
    n BIGINT NOT NULL
);
-- 1: who may do what; 2: sessions (a session's state changed or ended).
INSERT INTO auth_change (id, n) VALUES (1, 0), (2, 0);

CREATE TABLE throttle (
    key TEXT PRIMARY KEY NOT NULL,
    count INTEGER NOT NULL,
    window_end BIGINT NOT NULL
);
CREATE INDEX throttle_window_end ON throttle (window_end);

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
