-- Who a user is at an OpenID provider: a person by the provider's `sub`
-- (kind 'person'), or a client acting for itself with client-credentials
-- JWTs (kind 'client', subject its client id). Looked up by the issuer and
-- subject, never by a username.
CREATE TABLE oidc_identity (
    id SERIAL PRIMARY KEY,
    issuer VARCHAR(255) NOT NULL,
    kind VARCHAR(8) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    last_seen TIMESTAMP,
    UNIQUE (issuer, kind, subject)
);
CREATE INDEX oidc_identity_user ON oidc_identity (user_id);
