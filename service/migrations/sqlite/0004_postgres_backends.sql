-- Control plane, version 4: PostgreSQL backends and identity-aware applies.
-- databases.backend_secret: the sealed password of a PostgreSQL backend's URL (the URL
-- in `backend` never holds it). jobs.actor: who uploaded (JSON: verified JWT claims,
-- user, role, or API key), applied under that identity. jobs.refused: rows the
-- database refused when the job was applied (JSON list; NULL when none).
-- devices.visibility, visibility_cursor: the fingerprint of the database's read rules
-- (RLS policies, row policies) last served to the device in full, and where that full
-- download ended: when the rules change, the device's next download starts over.
ALTER TABLE databases ADD COLUMN backend_secret BLOB;
ALTER TABLE jobs ADD COLUMN actor TEXT;
ALTER TABLE jobs ADD COLUMN refused TEXT;
ALTER TABLE devices ADD COLUMN visibility TEXT;
ALTER TABLE devices ADD COLUMN visibility_cursor TEXT;
