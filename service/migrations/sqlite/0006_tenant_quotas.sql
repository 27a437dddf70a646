-- Control plane, version 6: quotas an operator set for one tenant, over the node's
-- defaults. quotas: a JSON object of the limits set (`databases`, `devices`,
-- `long_polls`, `long_polls_per_credential`); a limit not in it is the node's default.
CREATE TABLE tenant_quotas (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    quotas TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
