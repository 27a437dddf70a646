//! Change capture: the per-table metadata tables and the statement triggers that fill
//! the log.
//!
//! Tracking is done by **statement-level** triggers with transition tables, written in
//! PL/pgSQL and generated per table: one `INSERT … SELECT` into the log per statement,
//! whatever the number of rows, for `INSERT`, `UPDATE`, `DELETE`, `COPY` and
//! `MERGE` alike. An `UPDATE` joins its old and new rows on the primary key: a key
//! found on both sides is an update (with the mask of the columns whose value
//! changed), a new key is an insert and a vanished key a delete, so an `UPDATE` that
//! changes a primary key is recorded as the delete of the old key and the insert of
//! the new one. `TRUNCATE` is recorded, before it runs, as the delete of every row.
//!
//! While a payload is merged, `cloudsync.merging` is on for the transaction and the
//! triggers record nothing: merges never track themselves. User triggers are not
//! affected and see each merged row once.

use cloudsync_core::local::{OP_DELETE, OP_INSERT, OP_UPDATE};
use cloudsync_core::Algo;
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::sql::{exec, get, ident, literal, query_opt};
use crate::table::{SyncTable, MASK_BITS};
use crate::types::Kind;

/// Events that get a trigger, with the trigger's suffix.
const EVENTS: [&str; 4] = ["insert", "update", "delete", "truncate"];

/// Name of the trigger function of `event` for `t`.
fn function(t: &SyncTable, event: &str) -> String {
    format!("cloudsync.{}", ident(&format!("t{}_{event}", t.id)))
}

/// Whether a relation exists (`name` is qualified and quoted).
fn relation_exists(c: &SpiClient<'_>, name: &str) -> Result<bool> {
    Ok(query_opt(c, "SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[name.into()], |r| get::<bool>(r, 1, "exists"))?
        .unwrap_or(false))
}

/// Creates the clock and log tables of `t` if missing, widening the log's masks.
/// Existence is checked first, so no "already exists" notices reach the user.
pub fn create_tables(c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
    if !relation_exists(c, &t.clock())? {
        let keys: Vec<String> =
            t.pk.iter().zip(t.meta_keys()).map(|(k, mk)| format!("{mk} {} NOT NULL", k.sql_type)).collect();
        let key_names = t.meta_keys().join(", ");
        exec(
            c,
            &format!(
                "CREATE TABLE {clock} ({keys}, cl int8 NOT NULL, dbv int8 NOT NULL, seq int8 NOT NULL, \
                 clock bytea NOT NULL, PRIMARY KEY ({key_names}));
                 CREATE INDEX {feed} ON {clock} (dbv, seq);
                 CREATE TABLE {log} (lsn int8 GENERATED ALWAYS AS IDENTITY, op int2 NOT NULL, {keys});",
                clock = t.clock(),
                feed = ident(&format!("t{}_feed", t.id)),
                log = t.log(),
                keys = keys.join(", "),
            ),
            &[],
        )?;
        // The log has no index (the fold reads it whole), except for delete-wins
        // tables, whose insert guard looks deleted keys up in it.
        if t.algo == Algo::Dws {
            exec(
                c,
                &format!("CREATE INDEX {} ON {} ({key_names})", ident(&format!("t{}_log_keys", t.id)), t.log()),
                &[],
            )?;
        }
    }
    let masks = query_opt(
        c,
        "SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass($1) \
         AND attname ~ '^m[0-9]+$' AND NOT attisdropped",
        &[t.log().into()],
        |r| get::<i64>(r, 1, "count"),
    )?
    .unwrap_or(0);
    for w in masks..i64::from(t.mask_words) {
        exec(c, &format!("ALTER TABLE {} ADD COLUMN m{w} int8 NOT NULL DEFAULT 0", t.log()), &[])?;
    }
    Ok(())
}

/// Drops the triggers, trigger functions, clock and log of `t`.
pub fn drop_all(c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
    drop_triggers(c, t)?;
    for table in [t.clock(), t.log()] {
        if relation_exists(c, &table)? {
            exec(c, &format!("DROP TABLE {table}"), &[])?;
        }
    }
    Ok(())
}

/// Drops the triggers and trigger functions of `t` that exist.
pub fn drop_triggers(c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
    drop_triggers_keeping(c, t, false)
}

/// Drops the triggers of `t`, and its trigger functions unless `keep_functions`.
pub fn drop_triggers_keeping(c: &mut SpiClient<'_>, t: &SyncTable, keep_functions: bool) -> Result<()> {
    for event in EVENTS {
        let trigger = format!("cloudsync_{event}");
        let has_trigger = query_opt(
            c,
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
            &[t.relid.into(), trigger.clone().into()],
            |r| get::<bool>(r, 1, "exists"),
        )?
        .unwrap_or(false);
        if has_trigger {
            exec(c, &format!("DROP TRIGGER {} ON {}", ident(&trigger), t.rel), &[])?;
        }
        if keep_functions {
            continue;
        }
        let f = function(t, event);
        let has_function =
            query_opt(c, "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL", &[format!("{f}()").into()], |r| {
                get::<bool>(r, 1, "exists")
            })?
            .unwrap_or(false);
        if has_function {
            exec(c, &format!("DROP FUNCTION {f}()"), &[])?;
        }
    }
    Ok(())
}

/// (Re)creates the triggers of `t` for its current columns, filter and algorithm.
/// Tracking triggers exist only while the table is enabled; the guards of grow-only
/// and delete-wins tables always do.
///
/// The functions are replaced in place (`CREATE OR REPLACE`), never dropped and made
/// again: they are `SECURITY DEFINER`, and must keep running as the role that called
/// `cloudsync_init` even when someone else (a DBA's `ALTER TABLE`) rebuilds them.
pub fn create_triggers(c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
    drop_triggers_keeping(c, t, true)?;
    exec(c, &triggers_sql(t), &[])?;
    Ok(())
}

fn key_cols(t: &SyncTable, row: &str) -> String {
    t.pk.iter().map(|k| format!("{row}.{}", ident(&k.name))).collect::<Vec<_>>().join(", ")
}

fn key_match(t: &SyncTable, a: &str, b: &str) -> String {
    t.pk.iter().map(|k| format!("{a}.{n} = {b}.{n}", n = ident(&k.name))).collect::<Vec<_>>().join(" AND ")
}

fn meta_key_match(t: &SyncTable, meta: &str, row: &str) -> String {
    t.pk.iter()
        .zip(t.meta_keys())
        .map(|(k, mk)| format!("{meta}.{mk} = {row}.{}", ident(&k.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `rows` filtered by the table's row filter, as a FROM item.
fn filtered(t: &SyncTable, rows: &str) -> String {
    match &t.filter {
        Some(f) => format!("(SELECT * FROM {rows} WHERE ({f}))"),
        None => rows.to_string(),
    }
}

/// Whether a column changed between `o` and `n`. Types without a reliable equality
/// operator compare by their text form.
fn changed(col: &crate::table::Column) -> String {
    let c = ident(&col.name);
    match col.kind {
        Kind::Json { .. } | Kind::Other => format!("n.{c}::text IS DISTINCT FROM o.{c}::text"),
        _ => format!("n.{c} IS DISTINCT FROM o.{c}"),
    }
}

/// A trigger function. Local writers take the `db_version` lock in shared mode until
/// they commit, so a merge (which takes it exclusively) never interleaves with a
/// direct write: it sees every committed local write, and writers wait for it.
///
/// `SECURITY DEFINER` (with a fixed `search_path`): the roles an application writes
/// with need privileges on their tables only, not on schema `cloudsync`; the function
/// runs as the role that called `cloudsync_init`.
fn body(function: &str, statements: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
         SET search_path = pg_catalog, pg_temp AS $cs$\nBEGIN\n\
         IF pg_catalog.current_setting('cloudsync.merging', true) = 'on' THEN RETURN NULL; END IF;\n\
         PERFORM pg_catalog.pg_advisory_xact_lock_shared({lock});\n\
         {statements}\nRETURN NULL;\nEND\n$cs$;\n",
        lock = crate::meta::LOCK_KEY
    )
}

fn raise(message: &str) -> String {
    format!("RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation', MESSAGE = {};", literal(message))
}

fn triggers_sql(t: &SyncTable) -> String {
    let log = t.log();
    let keys = t.meta_keys().join(", ");
    let masks: Vec<String> = (0..t.mask_words).map(|w| format!("m{w}")).collect();
    let mut sql = String::new();
    let on = |event: &str, timing: &str, referencing: &str, statements: String, sql: &mut String| {
        let f = function(t, event);
        sql.push_str(&body(&f, &statements));
        sql.push_str(&format!(
            "CREATE TRIGGER {name} {timing} {upper} ON {rel} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {f}();\n",
            name = ident(&format!("cloudsync_{event}")),
            upper = event.to_uppercase(),
            rel = t.rel,
        ));
    };

    let (guard_update, guard_delete, guard_insert) = match t.algo {
        Algo::Gos => {
            let msg = |what: &str| format!("cloudsync: table {} is grow-only (gos): {what} is not allowed", t.display);
            (Some(raise(&msg("UPDATE"))), Some(raise(&msg("DELETE"))), None)
        }
        Algo::Dws => {
            let msg =
                format!("cloudsync: table {} is delete-wins (dws): a deleted key cannot be inserted again", t.display);
            let check = format!(
                "IF EXISTS (SELECT 1 FROM cs_new n JOIN {clock} m ON {mm} WHERE m.cl % 2 = 0) \
                 OR EXISTS (SELECT 1 FROM cs_new n JOIN {log} m ON {mm} WHERE m.op = {OP_DELETE}) THEN {raise} END IF;",
                clock = t.clock(),
                mm = meta_key_match(t, "m", "n"),
                raise = raise(&msg),
            );
            (None, None, Some(check))
        }
        Algo::Cls | Algo::Aws => (None, None, None),
    };

    if !t.enabled {
        // Guards only.
        if let Some(g) = guard_insert {
            on("insert", "AFTER", "REFERENCING NEW TABLE AS cs_new", g, &mut sql);
        }
        if let Some(g) = guard_update {
            on("update", "BEFORE", "", g, &mut sql);
        }
        if let Some(g) = guard_delete.clone() {
            on("delete", "BEFORE", "", g.clone(), &mut sql);
            on("truncate", "BEFORE", "", g, &mut sql);
        }
        return sql;
    }

    // INSERT (and COPY, and the insert half of MERGE / INSERT … ON CONFLICT).
    let insert = format!(
        "{guard}INSERT INTO {log} (op, {keys}) SELECT {OP_INSERT}, {nk} FROM {rows} n;",
        guard = guard_insert.unwrap_or_default(),
        nk = key_cols(t, "n"),
        rows = filtered(t, "cs_new"),
    );
    on("insert", "AFTER", "REFERENCING NEW TABLE AS cs_new", insert, &mut sql);

    // UPDATE: join old and new rows on the key.
    match guard_update {
        Some(g) => on("update", "BEFORE", "", g, &mut sql),
        None => {
            let words = t.mask_words as usize;
            let mut mask_exprs: Vec<Vec<String>> = vec![Vec::new(); words];
            for sc in &t.columns {
                let w = (sc.id / MASK_BITS) as usize;
                let bit = 1i64 << (sc.id % MASK_BITS);
                if let Some(word) = mask_exprs.get_mut(w) {
                    word.push(format!("(CASE WHEN {} THEN {bit} ELSE 0 END)", changed(&sc.col)));
                }
            }
            let mask_sql: Vec<String> = mask_exprs
                .iter()
                .map(|e| if e.is_empty() { "0::int8".into() } else { format!("({})::int8", e.join(" | ")) })
                .collect();
            let any_changed = if mask_sql.is_empty() {
                "false".to_string()
            } else {
                mask_sql.iter().map(|m| format!("{m} <> 0")).collect::<Vec<_>>().join(" OR ")
            };
            let zeros = vec!["0"; words].join(", ");
            let update = if t.filter.is_none() {
                // One pass: a full join of old and new rows on the key. (The fold
                // ignores the masks of inserts and deletes.)
                format!(
                    "INSERT INTO {log} (op, {masks}, {keys})\n\
                     SELECT CASE WHEN n.\"cloudsync new\" IS NULL THEN {OP_DELETE} \
                     WHEN o.\"cloudsync old\" IS NULL THEN {OP_INSERT} ELSE {OP_UPDATE} END, {mask_list}, {keys_either}\n\
                     FROM (SELECT true AS \"cloudsync new\", * FROM cs_new) n \
                     FULL JOIN (SELECT true AS \"cloudsync old\", * FROM cs_old) o ON {kmatch}\n\
                     WHERE n.\"cloudsync new\" IS NULL OR o.\"cloudsync old\" IS NULL OR {any_changed};",
                    masks = masks.join(", "),
                    mask_list = mask_sql.join(", "),
                    keys_either = t
                        .pk
                        .iter()
                        .map(|k| format!("COALESCE(n.{c}, o.{c})", c = ident(&k.name)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    kmatch = key_match(t, "n", "o"),
                )
            } else {
                // With a filter, a row that stops matching is not a delete: only keys
                // gone from the (unfiltered) new rows are.
                format!(
                    "INSERT INTO {log} (op, {masks}, {keys})\n\
                     SELECT CASE WHEN o.\"cloudsync hit\" IS NULL THEN {OP_INSERT} ELSE {OP_UPDATE} END, {mask_list}, {nk}\n\
                     FROM {new_rows} n LEFT JOIN (SELECT true AS \"cloudsync hit\", * FROM {old_rows} x) o ON {kmatch}\n\
                     WHERE o.\"cloudsync hit\" IS NULL OR {any_changed}\n\
                     UNION ALL\n\
                     SELECT {OP_DELETE}, {zeros}, {ok} FROM {old_rows} o WHERE NOT EXISTS (SELECT 1 FROM cs_new n WHERE {kmatch});",
                    masks = masks.join(", "),
                    mask_list = mask_sql.join(", "),
                    nk = key_cols(t, "n"),
                    ok = key_cols(t, "o"),
                    new_rows = filtered(t, "cs_new"),
                    old_rows = filtered(t, "cs_old"),
                    kmatch = key_match(t, "n", "o"),
                )
            };
            // PL/pgSQL caches one plan per statement, made for the transition tables'
            // sizes at its first run: a plan for one row reused for a million (or the
            // reverse) is a disaster. Single-row statements (the ORM case) keep a
            // cached plan; larger ones are planned for their actual size.
            let update = format!(
                "IF (SELECT count(*) FROM (SELECT 1 FROM cs_new LIMIT 2) x) <= 1 THEN\n{update}\n\
                 ELSE EXECUTE {};\nEND IF;",
                literal(update.trim_end_matches(';'))
            );
            on("update", "AFTER", "REFERENCING OLD TABLE AS cs_old NEW TABLE AS cs_new", update, &mut sql);
        }
    }

    match guard_delete {
        Some(g) => {
            on("delete", "BEFORE", "", g.clone(), &mut sql);
            on("truncate", "BEFORE", "", g, &mut sql);
        }
        None => {
            let delete = format!(
                "INSERT INTO {log} (op, {keys}) SELECT {OP_DELETE}, {ok} FROM {rows} o;",
                ok = key_cols(t, "o"),
                rows = filtered(t, "cs_old"),
            );
            on("delete", "AFTER", "REFERENCING OLD TABLE AS cs_old", delete, &mut sql);
            let truncate = format!(
                "INSERT INTO {log} (op, {keys}) SELECT {OP_DELETE}, {ok} FROM {rows} o;",
                ok = key_cols(t, "o"),
                rows = filtered(t, &t.rel),
            );
            on("truncate", "BEFORE", "", truncate, &mut sql);
        }
    }
    sql
}

/// Records every row of `t` that has no clock yet (and matches the filter) as a local
/// insert: rows that existed before `cloudsync_init`, or before a filter matched them.
pub fn backfill(c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
    exec(
        c,
        &format!(
            "INSERT INTO {log} (op, {keys}) SELECT {OP_INSERT}, {uk} FROM {rows} u \
             WHERE NOT EXISTS (SELECT 1 FROM {clock} m WHERE {mm})",
            log = t.log(),
            keys = t.meta_keys().join(", "),
            uk = key_cols(t, "u"),
            rows = filtered(t, &t.rel),
            clock = t.clock(),
            mm = meta_key_match(t, "m", "u"),
        ),
        &[],
    )?;
    Ok(())
}
