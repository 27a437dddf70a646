-- Control plane, version 3: admin dashboard sessions. Times are Unix milliseconds.
-- A session is a random cookie value; only its SHA-256 is stored. An operator session
-- (api_key_id NULL) is tied to the admin token it signed in with (its SHA-256), so
-- changing the token ends every operator session; a tenant session names the admin
-- key it signed in with, and ends when that key is revoked or expires.
CREATE TABLE dashboard_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    api_key_id TEXT REFERENCES api_keys (id) ON DELETE CASCADE,
    operator_hash TEXT,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
