-- Objects defined in SQL over the Rust functions. Runs last in CREATE EXTENSION.

-- cloudsync_init also takes a regclass: cloudsync_init('todos'::regclass).
CREATE FUNCTION cloudsync_init(tbl regclass, algo text DEFAULT 'cls', flags int4 DEFAULT 0, sync_name text DEFAULT NULL)
RETURNS bytea LANGUAGE sql VOLATILE
AS $$ SELECT cloudsync_init(pg_catalog.format('%s', tbl::oid::regclass), algo, flags, sync_name) $$;

-- Every change, in feed order (filter it with WHERE db_version > …).
CREATE VIEW cloudsync_changes AS SELECT * FROM cloudsync_changes_since(0);

-- The SQLite extension's aggregate, with the same arguments:
-- SELECT cloudsync_payload_encode(tbl, pk, col_name, col_value, col_version, db_version, site_id, cl, seq)
--   FROM cloudsync_changes WHERE db_version > $1;
CREATE AGGREGATE cloudsync_payload_encode(
    tbl text, pk bytea, col_name text, col_value bytea, col_version int8, db_version int8, site_id bytea, cl int8, seq int8
) (
    SFUNC = cloudsync.payload_encode_step,
    STYPE = int8,
    FINALFUNC = cloudsync.payload_encode_final,
    FINALFUNC_MODIFY = READ_WRITE
);

-- Sync names and the tables behind them.
CREATE VIEW cloudsync_tables AS
SELECT t.name AS sync_name, t.relid AS table_name, t.algo, t.enabled, t.filter
FROM cloudsync.tables t ORDER BY t.name;

-- A synced table that is dropped takes its metadata with it.
CREATE FUNCTION cloudsync.on_sql_drop() RETURNS event_trigger LANGUAGE plpgsql AS $cs$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT t.id FROM cloudsync.tables t
        JOIN pg_catalog.pg_event_trigger_dropped_objects() d
          ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = t.relid::oid AND d.objsubid = 0
    LOOP
        EXECUTE pg_catalog.format('DROP TABLE IF EXISTS cloudsync.%I, cloudsync.%I',
            't' || r.id || '_clock', 't' || r.id || '_log');
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS cloudsync.%I(), cloudsync.%I(), cloudsync.%I(), cloudsync.%I()',
            't' || r.id || '_insert', 't' || r.id || '_update', 't' || r.id || '_delete', 't' || r.id || '_truncate');
        DELETE FROM cloudsync.tables WHERE id = r.id;
    END LOOP;
END
$cs$;
CREATE EVENT TRIGGER cloudsync_sql_drop ON sql_drop EXECUTE FUNCTION cloudsync.on_sql_drop();

-- An ALTER TABLE of a synced table outside cloudsync_begin_alter/commit_alter (an ORM's
-- migration, psql) is adopted when it ends: new columns synced, dropped ones
-- remembered, triggers rebuilt for the new shape and name; a primary-key change is
-- refused, which rolls the ALTER back.
CREATE FUNCTION cloudsync.on_ddl_end() RETURNS event_trigger LANGUAGE plpgsql AS $cs$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT d.objid FROM pg_catalog.pg_event_trigger_ddl_commands() d
        JOIN cloudsync.tables t ON t.relid::oid = d.objid
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
    LOOP
        PERFORM cloudsync.after_alter(r.objid);
    END LOOP;
END
$cs$;
CREATE EVENT TRIGGER cloudsync_ddl_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION cloudsync.on_ddl_end();
