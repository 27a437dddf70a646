//! The triggers that record local writes, and the metadata tables behind them.
//!
//! Tracking triggers are plain SQL: they only append `(op, changed-column mask, key)`
//! to the table's log, so they are cheap, and a connection that has not loaded the
//! extension can still write to synced tables (its writes are recorded and folded
//! into clocks later). Guard triggers (grow-only and delete-wins tables) call
//! `cloudsync_is_merging()`, so without the extension they fail closed.

use cloudsync_core::schema::Affinity;
use cloudsync_core::Algo;
use rusqlite::Connection;

use crate::filter;
use crate::meta::table::{SyncTable, MASK_BITS};
use cloudsync_core::local::{OP_DELETE, OP_INSERT, OP_UPDATE};

use crate::sql::{ident, literal};
use crate::Result;

fn trigger_name(t: &SyncTable, suffix: &str) -> String {
    ident(&format!("{}_cloudsync_{suffix}", t.name))
}

/// Creates the clock and log tables of `t` if missing, and widens the log's mask
/// columns when columns were added.
pub fn create_tables(conn: &Connection, t: &SyncTable) -> Result<()> {
    crate::meta::cache::invalidate();
    let keys = t.meta_keys();
    let key_list = keys.join(", ");
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {meta} ({key_list}, cl INTEGER NOT NULL, dbv INTEGER NOT NULL, \
         seq INTEGER NOT NULL, clock BLOB NOT NULL, PRIMARY KEY ({key_list})) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS {feed} ON {meta} (dbv, seq);
         CREATE TABLE IF NOT EXISTS {log} (lsn INTEGER PRIMARY KEY, op INTEGER NOT NULL, {key_list});",
        meta = t.meta(),
        feed = ident(&format!("{}_cloudsync_feed", t.name)),
        log = t.log(),
    ))?;
    for w in 0..t.mask_words {
        let col = format!("m{w}");
        let has: bool = conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [format!("{}_cloudsync_log", t.name), col.clone()],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {} ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0", t.log()))?;
        }
    }
    if t.algo == Algo::Dws {
        // The delete-wins guard looks up deleted keys in the log.
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({key_list})",
            ident(&format!("{}_cloudsync_log_keys", t.name)),
            t.log()
        ))?;
    }
    Ok(())
}

/// Drops the clock and log tables of `t`.
pub fn drop_tables(conn: &Connection, t: &SyncTable) -> Result<()> {
    crate::meta::cache::invalidate();
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};", t.meta(), t.log()))?;
    Ok(())
}

/// Whether a trigger name is one the extension creates for `table`: names starting
/// with `<table>_cloudsync_` are reserved.
pub fn is_ours(table: &str, trigger: &str) -> bool {
    let prefix = format!("{table}_cloudsync_");
    trigger.len() > prefix.len() && trigger.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(&prefix))
}

/// Drops every trigger the extension created on `t`.
pub fn drop_triggers(conn: &Connection, t: &SyncTable) -> Result<()> {
    crate::meta::cache::invalidate();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name = ?1")?
        .query_map([&t.name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let sql: String =
        names.iter().filter(|n| is_ours(&t.name, n)).map(|n| format!("DROP TRIGGER IF EXISTS {};", ident(n))).collect();
    conn.execute_batch(&sql)?;
    Ok(())
}

/// (Re)creates the triggers of `t` for its current columns, filter and algorithm.
/// Tracking triggers are only installed while the table is enabled.
pub fn create_triggers(conn: &Connection, t: &SyncTable) -> Result<()> {
    crate::meta::cache::invalidate();
    drop_triggers(conn, t)?;
    conn.execute_batch(&triggers_sql(t))?;
    Ok(())
}

fn pk_list(t: &SyncTable, row: &str) -> String {
    t.pk.iter().map(|k| format!("{row}.{}", ident(&k.name))).collect::<Vec<_>>().join(", ")
}

/// Tables with at most this many synced columns get one update trigger per column.
const PER_COLUMN_TRIGGERS_MAX: usize = 16;

/// `NEW.col` differs from `OLD.col`: bytewise, ignoring collations, and for columns
/// without affinity also by type (there `1` and `1.0` compare equal).
fn changed(c: &crate::meta::table::SyncColumn) -> String {
    let col = ident(&c.name);
    let mut e = format!("NEW.{col} IS NOT OLD.{col} COLLATE BINARY");
    if Affinity::of(&c.decl_type) == Affinity::Blob {
        e = format!("({e} OR typeof(NEW.{col}) IS NOT typeof(OLD.{col}))");
    }
    e
}

/// Triggers for updates that keep the key.
///
/// With few columns, one trigger per column, declared `AFTER UPDATE OF <column>`:
/// SQLite then runs only the triggers of the columns an UPDATE statement sets, and each
/// logs a constant mask (updating one column of every row costs one small trigger per
/// row). Wider tables get one trigger computing the mask of every column, so an ORM
/// that sets all columns does not pay one trigger per column.
fn update_triggers(t: &SyncTable, pk_same: &str, filter_new: Option<&str>, filter_old: Option<&str>, sql: &mut String) {
    let table = t.quoted();
    let log = t.log();
    let keys = t.meta_keys().join(", ");
    let newk = pk_list(t, "NEW");
    // A row that starts matching the filter is logged as an insert of the whole row.
    let op = match filter_old {
        Some(f) => format!("CASE WHEN {f} THEN {OP_UPDATE} ELSE {OP_INSERT} END"),
        None => OP_UPDATE.to_string(),
    };
    let and_filter = filter_new.map(|f| format!(" AND {f}")).unwrap_or_default();
    if t.columns.is_empty() {
        return;
    }
    if t.columns.len() <= PER_COLUMN_TRIGGERS_MAX {
        for c in &t.columns {
            let word = c.id / MASK_BITS;
            let bit = 1u64 << (c.id % MASK_BITS);
            sql.push_str(&format!(
                "CREATE TRIGGER {name} AFTER UPDATE OF {col} ON {table} WHEN {pk_same} AND {changed}{and_filter}\nBEGIN\n\
                 INSERT INTO {log} (op, m{word}, {keys}) VALUES ({op}, {mask}, {newk});\nEND;\n",
                name = trigger_name(t, &format!("au{}", c.id)),
                col = ident(&c.name),
                changed = changed(c),
                mask = bit.cast_signed(),
            ));
        }
        return;
    }
    let words = t.mask_words;
    let mut masks = vec![Vec::new(); words as usize];
    for c in &t.columns {
        masks[(c.id / MASK_BITS) as usize].push(format!("(({}) << {})", changed(c), c.id % MASK_BITS));
    }
    let mask_exprs: Vec<String> =
        masks.iter().map(|m| if m.is_empty() { "0".to_string() } else { m.join(" | ") }).collect();
    let mask_cols: Vec<String> = (0..words).map(|w| format!("m{w}")).collect();
    // The WHEN repeats the comparisons so that a no-op UPDATE costs no log row.
    let changed_any = t.columns.iter().map(changed).collect::<Vec<_>>().join(" OR ");
    let value_cols = t.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ");
    let when = match (filter_new, filter_old) {
        (Some(fnew), Some(fold)) => format!("{pk_same} AND {fnew} AND (NOT {fold} OR {changed_any})"),
        _ => format!("{pk_same} AND ({changed_any})"),
    };
    sql.push_str(&format!(
        "CREATE TRIGGER {name} AFTER UPDATE OF {value_cols} ON {table} WHEN {when}\nBEGIN\nINSERT INTO {log} (op, {mcols}, {keys}) \
         VALUES ({op}, {mvals}, {newk});\nEND;\n",
        name = trigger_name(t, "au"),
        mcols = mask_cols.join(", "),
        mvals = mask_exprs.join(", "),
    ));
}

/// SQL of the triggers of `t`.
pub fn triggers_sql(t: &SyncTable) -> String {
    let table = t.quoted();
    let log = t.log();
    let keys = t.meta_keys().join(", ");
    let names: Vec<String> =
        t.columns.iter().map(|c| c.name.clone()).chain(t.pk.iter().map(|k| k.name.clone())).collect();
    let filter_new = t.filter.as_ref().map(|f| format!("({})", filter::qualify(f, &names, "NEW")));
    let filter_old = t.filter.as_ref().map(|f| format!("({})", filter::qualify(f, &names, "OLD")));
    let null_check = |row: &str| -> String {
        t.pk.iter()
            .filter(|k| !k.not_null)
            .map(|k| {
                let msg = format!(
                    "cloudsync: null_primary_key: NULL in primary key column \"{}\" of table \"{}\"",
                    k.name, t.name
                );
                format!("SELECT RAISE(ABORT, {}) WHERE {row}.{} IS NULL;\n", literal(&msg), ident(&k.name))
            })
            .collect()
    };
    let pk_same =
        t.pk.iter()
            .map(|k| format!("NEW.{0} IS OLD.{0} COLLATE BINARY", ident(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
    let mut sql = String::new();

    if t.enabled {
        let when_new = filter_new.as_ref().map(|f| format!("WHEN {f}")).unwrap_or_default();
        sql.push_str(&format!(
            "CREATE TRIGGER {name} AFTER INSERT ON {table} {when_new}\nBEGIN\n{nc}INSERT INTO {log} (op, {keys}) VALUES ({OP_INSERT}, {newk});\nEND;\n",
            name = trigger_name(t, "ai"),
            nc = null_check("NEW"),
            newk = pk_list(t, "NEW"),
        ));

        update_triggers(t, &pk_same, filter_new.as_deref(), filter_old.as_deref(), &mut sql);

        // Updates that change the key: the old key is deleted, the new one inserted.
        let insert_new_when = filter_new.as_ref().map(|f| format!(" WHERE {f}")).unwrap_or_default();
        sql.push_str(&format!(
            "CREATE TRIGGER {name} AFTER UPDATE OF {key_cols} ON {table} WHEN NOT ({pk_same})\nBEGIN\n{nc}\
             INSERT INTO {log} (op, {keys}) VALUES ({OP_DELETE}, {oldk});\n\
             INSERT INTO {log} (op, {keys}) SELECT {OP_INSERT}, {newk}{insert_new_when};\nEND;\n",
            name = trigger_name(t, "ak"),
            key_cols = t.pk.iter().map(|k| ident(&k.name)).collect::<Vec<_>>().join(", "),
            nc = null_check("NEW"),
            oldk = pk_list(t, "OLD"),
            newk = pk_list(t, "NEW"),
        ));

        sql.push_str(&format!(
            "CREATE TRIGGER {name} AFTER DELETE ON {table}\nBEGIN\nINSERT INTO {log} (op, {keys}) VALUES ({OP_DELETE}, {oldk});\nEND;\n",
            name = trigger_name(t, "ad"),
            oldk = pk_list(t, "OLD"),
        ));
    }

    match t.algo {
        Algo::Gos => {
            for (suffix, what) in [("bu", "UPDATE"), ("bd", "DELETE")] {
                let msg =
                    format!("cloudsync: grow_only: table \"{}\" is grow-only (gos): {what} is not allowed", t.name);
                sql.push_str(&format!(
                    "CREATE TRIGGER {name} BEFORE {what} ON {table} WHEN NOT cloudsync_is_merging()\nBEGIN\nSELECT RAISE(ABORT, {msg});\nEND;\n",
                    name = trigger_name(t, suffix),
                    msg = literal(&msg),
                ));
            }
        }
        Algo::Dws => {
            let key_match =
                t.pk.iter()
                    .enumerate()
                    .map(|(i, k)| format!("k{i} = NEW.{}", ident(&k.name)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
            let msg = format!(
                "cloudsync: delete_wins: table \"{}\" is delete-wins (dws): a deleted key cannot be inserted again",
                t.name
            );
            sql.push_str(&format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN NOT cloudsync_is_merging() AND \
                 (EXISTS (SELECT 1 FROM {meta} WHERE {key_match} AND cl % 2 = 0) OR \
                 EXISTS (SELECT 1 FROM {log} WHERE {key_match} AND op = {OP_DELETE}))\nBEGIN\nSELECT RAISE(ABORT, {msg});\nEND;\n",
                name = trigger_name(t, "bi"),
                meta = t.meta(),
                msg = literal(&msg),
            ));
        }
        Algo::Cls | Algo::Aws => {}
    }
    sql
}
