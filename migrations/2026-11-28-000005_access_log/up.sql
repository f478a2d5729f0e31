-- Every proxied request: who (by name, kept after the user is deleted),
-- with which token (its prefix, or "session"), from where, what, on which
-- feed, how it ended, how much, how long. Written in batches, off the
-- request path; kept for AUDIT_RETENTION.
CREATE TABLE access_log (
    id SERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    username TEXT NOT NULL,
    credential TEXT NOT NULL,
    client TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    feed TEXT,
    status INTEGER NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL
);
-- Only the index the hourly purge needs: every other index would cost each
-- of many thousands of inserts a second (the admin's searches scan).
CREATE INDEX access_log_at ON access_log (at);

INSERT INTO auth_permission (app_label, codename, name)
    VALUES ('lbasedb', 'view_access', 'Can view access');
