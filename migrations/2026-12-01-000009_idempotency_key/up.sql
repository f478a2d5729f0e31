-- `Idempotency-Key`: per user and key, what the first write with it was
-- (a digest of its method, endpoint, query and body) and what the
-- upstream answered, to replay to a retry. A row whose status is NULL is
-- a write still in flight (its expires_at is a lease, not the TTL).
CREATE TABLE idempotency_key (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    client_key VARCHAR(255) NOT NULL,
    request_digest VARCHAR(64),
    status INTEGER,
    content_type VARCHAR(255),
    answer TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    UNIQUE (user_id, client_key)
);
CREATE INDEX idempotency_key_expires ON idempotency_key (expires_at);
