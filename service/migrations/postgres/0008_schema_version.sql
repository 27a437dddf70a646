-- Control plane, version 8: each database's schema version, which grows by one each
-- time provisioning through the service changes its schema (docs/schema-changes.md).
ALTER TABLE databases ADD COLUMN schema_version BIGINT NOT NULL DEFAULT 0;
