-- Control plane, version 2: tenant management, identity settings, device accounting
-- and usage. Times are Unix milliseconds.
ALTER TABLE tenants ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
-- Set while a deletion is in progress: the tenant is invisible and cannot sync, and a
-- retried deletion finishes the job.
ALTER TABLE tenants ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;

ALTER TABLE databases ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE databases ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;

ALTER TABLE devices ADD COLUMN user_id TEXT;
ALTER TABLE devices ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN bytes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN bytes_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN changes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN changes_out INTEGER NOT NULL DEFAULT 0;
-- The server position the device last asked changes after (it holds everything before).
ALTER TABLE devices ADD COLUMN last_download TEXT;
ALTER TABLE devices ADD COLUMN blocked_at INTEGER;
ALTER TABLE devices ADD COLUMN blocked_reason TEXT;

-- How a tenant's own identity provider signs the JWTs its devices present.
CREATE TABLE identities (
    tenant_id TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    secret BLOB,
    public_key TEXT,
    jwks_url TEXT,
    algorithm TEXT NOT NULL,
    issuer TEXT NOT NULL,
    audience TEXT NOT NULL,
    leeway_s INTEGER NOT NULL,
    user_claim TEXT NOT NULL,
    role_claim TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Hourly usage per database. Kept when a database is deleted (the tenant's history),
-- removed with the tenant.
CREATE TABLE usage_hours (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    database_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    changes_in INTEGER NOT NULL DEFAULT 0,
    changes_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (database_id, hour)
);
CREATE INDEX usage_hours_by_tenant ON usage_hours (tenant_id, hour);

-- Which devices were active in which hour (for distinct active-device counts).
CREATE TABLE device_hours (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    database_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    site_id TEXT NOT NULL,
    PRIMARY KEY (database_id, hour, site_id)
);
CREATE INDEX device_hours_by_tenant ON device_hours (tenant_id, hour);
