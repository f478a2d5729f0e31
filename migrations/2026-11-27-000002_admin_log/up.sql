-- Django's LogEntry: what was done in the admin, by whom, when, and for a
-- change each field's old and new value (never a password hash or token).
-- Admin logins, failed ones included, are recorded here too.
CREATE TABLE admin_log (
    id SERIAL PRIMARY KEY,
    action_time TIMESTAMP NOT NULL,
    user_id INTEGER REFERENCES auth_user (id) ON DELETE SET NULL,
    username TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    object_repr TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX admin_log_object ON admin_log (object_type, object_id);
CREATE INDEX admin_log_user ON admin_log (user_id);
