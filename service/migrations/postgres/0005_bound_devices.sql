-- Control plane, version 5: a device's site id is bound to who first used it.
-- devices.subject: the credential subject the site id is bound to (`user:<JWT user id>`
-- or `key:<API key id>`), set on the device's first sync request; bound_at: when (Unix
-- ms), which also caps new site ids per credential per hour. NULL for a device that has
-- not synced since this version (bound on its next request) or whose binding an
-- operator released.
-- blocked_subjects: users and API keys blocked from syncing with a database, whatever
-- site id they use.
ALTER TABLE devices ADD COLUMN subject TEXT;
ALTER TABLE devices ADD COLUMN bound_at BIGINT;
CREATE INDEX devices_by_subject ON devices (subject, bound_at);
CREATE TABLE blocked_subjects (
    database_id TEXT NOT NULL REFERENCES databases (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    blocked_at BIGINT NOT NULL,
    reason TEXT,
    PRIMARY KEY (database_id, subject)
);
