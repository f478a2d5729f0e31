-- Django's auth model (users, groups, permissions and their links), plus
-- per-feed grants (django-guardian), hashed named tokens (django-rest-knox)
-- and server-side sessions.

CREATE TABLE auth_user (
    id SERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    is_staff BOOLEAN NOT NULL DEFAULT FALSE,
    is_superuser BOOLEAN NOT NULL DEFAULT FALSE,
    date_joined TIMESTAMP NOT NULL,
    last_login TIMESTAMP
);

CREATE TABLE auth_group (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE auth_permission (
    id SERIAL PRIMARY KEY,
    app_label TEXT NOT NULL,
    codename TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (app_label, codename)
);

CREATE TABLE auth_user_groups (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    group_id INTEGER NOT NULL REFERENCES auth_group (id) ON DELETE CASCADE,
    UNIQUE (user_id, group_id)
);

CREATE TABLE auth_group_permissions (
    id SERIAL PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES auth_group (id) ON DELETE CASCADE,
    permission_id INTEGER NOT NULL REFERENCES auth_permission (id) ON DELETE CASCADE,
    UNIQUE (group_id, permission_id)
);

CREATE TABLE auth_user_user_permissions (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    permission_id INTEGER NOT NULL REFERENCES auth_permission (id) ON DELETE CASCADE,
    UNIQUE (user_id, permission_id)
);

-- A permission held for one feed only, by a group or by a user.
CREATE TABLE feed_grant (
    id SERIAL PRIMARY KEY,
    group_id INTEGER REFERENCES auth_group (id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES auth_user (id) ON DELETE CASCADE,
    permission_id INTEGER NOT NULL REFERENCES auth_permission (id) ON DELETE CASCADE,
    feed TEXT NOT NULL,
    CHECK ((group_id IS NULL) <> (user_id IS NULL))
);
CREATE UNIQUE INDEX feed_grant_group ON feed_grant (group_id, permission_id, feed) WHERE group_id IS NOT NULL;
CREATE UNIQUE INDEX feed_grant_user ON feed_grant (user_id, permission_id, feed) WHERE user_id IS NOT NULL;
CREATE INDEX feed_grant_feed ON feed_grant (feed);

-- Only the SHA-256 of a token's secret is kept; the prefix identifies it.
CREATE TABLE authtoken_token (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL UNIQUE,
    digest TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    last_used_at TIMESTAMP,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX authtoken_token_user ON authtoken_token (user_id);

-- Server-side sessions, keyed by the SHA-256 of the cookie's key.
CREATE TABLE session (
    key_digest TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    user_id INTEGER REFERENCES auth_user (id) ON DELETE CASCADE,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX session_user_id ON session (user_id);
CREATE INDEX session_expires ON session (expires_at);

INSERT INTO auth_permission (app_label, codename, name) VALUES
    ('lbasedb', 'view_feed', 'Can view feed'),
    ('lbasedb', 'add_feed', 'Can add feed'),
    ('lbasedb', 'change_feed', 'Can change feed'),
    ('lbasedb', 'delete_feed', 'Can delete feed'),
    ('lbasedb', 'view_col', 'Can view col'),
    ('lbasedb', 'add_col', 'Can add col'),
    ('lbasedb', 'change_col', 'Can change col'),
    ('lbasedb', 'delete_col', 'Can delete col'),
    ('lbasedb', 'view_data', 'Can view data'),
    ('lbasedb', 'add_data', 'Can add data'),
    ('lbasedb', 'change_data', 'Can change data'),
    ('lbasedb', 'delete_data', 'Can delete data'),
    ('auth', 'view_user', 'Can view user'),
    ('auth', 'add_user', 'Can add user'),
    ('auth', 'change_user', 'Can change user'),
    ('auth', 'delete_user', 'Can delete user'),
    ('auth', 'view_group', 'Can view group'),
    ('auth', 'add_group', 'Can add group'),
    ('auth', 'change_group', 'Can change group'),
    ('auth', 'delete_group', 'Can delete group'),
    ('authtoken', 'view_token', 'Can view token'),
    ('authtoken', 'add_token', 'Can add token'),
    ('authtoken', 'change_token', 'Can change token'),
    ('authtoken', 'delete_token', 'Can delete token');
