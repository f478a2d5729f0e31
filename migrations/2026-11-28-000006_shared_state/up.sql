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
