-- Control plane, version 7: a device's own report that applying downloads fails on it
-- (its database refuses what the server sends: a local constraint, a trigger, a full
-- disk). Set while it fails, with when the failing started; cleared by the device once
-- a download applies again.
ALTER TABLE devices ADD COLUMN receive_error_code TEXT;
ALTER TABLE devices ADD COLUMN receive_error_message TEXT;
ALTER TABLE devices ADD COLUMN receive_failing_since BIGINT;
