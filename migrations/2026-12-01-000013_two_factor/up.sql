-- Two-factor login (RFC 6238). A user's secret (base32), confirmed once a
-- code from it was typed; `last_step` is the last time step whose code was
-- accepted: no code is accepted twice.
CREATE TABLE user_totp (
    user_id INTEGER PRIMARY KEY REFERENCES auth_user (id) ON DELETE CASCADE,
    secret VARCHAR(64) NOT NULL,
    confirmed_at TIMESTAMP,
    last_step BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);
-- Ten single-use recovery codes per user, by their SHA-256 digest.
CREATE TABLE user_recovery_code (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    digest VARCHAR(64) NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX user_recovery_code_user ON user_recovery_code (user_id);
