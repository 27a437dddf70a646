//! Folding the local change log into clocks.
//!
//! The tracking triggers append to `<table>_cloudsync_log`; folding turns those
//! entries into clock updates, in key order (so clock pages are visited sequentially),
//! gives every row changed by the fold one position `(db_version, seq)` in the local
//! feed, and empties the log. It runs at the start of everything that reads or merges
//! clocks, inside that operation's transaction, so readers never see a stale clock.

use cloudsync_core::local::{Fold, Folded, OP_UPDATE};
use cloudsync_core::{ColId, Value};
use rusqlite::types::ValueRef;
use rusqlite::{params_from_iter, Connection};

use crate::meta::table::{SyncTable, MASK_BITS};
use crate::sql::{i64_of, u64_of, value_of, Bind};
use crate::{meta, Error, Result};

/// Whether `t` has local writes not yet folded.
pub fn pending(conn: &Connection, t: &SyncTable) -> Result<bool> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", t.log());
    Ok(conn.prepare_cached(&sql)?.query_row([], |r| r.get(0))?)
}

/// Whether any synced table has local writes not yet folded.
pub fn any_pending(conn: &Connection) -> Result<bool> {
    for name in SyncTable::names(conn)? {
        if let Some(t) = SyncTable::load(conn, &name)? {
            if pending(conn, &t)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Folds every synced table's log under one new `db_version`, taken only if some
/// row's clock changed. Returns the number of rows whose clock changed.
///
/// Runs in its own savepoint: called from a SQL function in autocommit mode, each
/// statement would otherwise commit (and sync) on its own.
pub fn fold_all(conn: &Connection) -> Result<u64> {
    crate::sql::in_savepoint(conn, "cloudsync_fold", || fold_all_in_txn(conn))
}

fn fold_all_in_txn(conn: &Connection) -> Result<u64> {
    let mut tables = Vec::new();
    for name in SyncTable::names(conn)? {
        if let Some(t) = SyncTable::load(conn, &name)? {
            if pending(conn, &t)? {
                tables.push(t);
            }
        }
    }
    if tables.is_empty() {
        return Ok(0);
    }
    let dbv = meta::db_version(conn)? + 1;
    let mut seq = 0u64;
    for t in &tables {
        fold_table(conn, t, dbv, &mut seq)?;
    }
    if seq > 0 {
        meta::set_db_version(conn, dbv)?;
    }
    Ok(seq)
}

fn fold_table(conn: &Connection, t: &SyncTable, dbv: u64, seq: &mut u64) -> Result<()> {
    let keys = t.meta_keys();
    let nk = keys.len();
    let words = t.mask_words as usize;
    let masks: Vec<String> = (0..words).map(|w| format!("l.m{w}")).collect();
    let join = keys.iter().map(|k| format!("m.{k} = l.{k}")).collect::<Vec<_>>().join(" AND ");
    let order = keys.iter().map(|k| format!("l.{k}")).collect::<Vec<_>>().join(", ");
    let select = format!(
        "SELECT l.op, {masks}, {lkeys}, m.cl, m.dbv, m.seq, m.clock FROM {log} l LEFT JOIN {meta} m ON {join} ORDER BY {order}, l.lsn",
        masks = masks.join(", "),
        lkeys = keys.iter().map(|k| format!("l.{k}")).collect::<Vec<_>>().join(", "),
        log = t.log(),
        meta = t.meta(),
    );
    let upsert = format!(
        "INSERT INTO {meta} ({klist}, cl, dbv, seq, clock) VALUES ({params}) \
         ON CONFLICT ({klist}) DO UPDATE SET cl = excluded.cl, dbv = excluded.dbv, seq = excluded.seq, clock = excluded.clock",
        meta = t.meta(),
        klist = keys.join(", "),
        params = (1..=nk + 4).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "),
    );
    let info = t.info();
    let live: Vec<ColId> = info.column_ids();
    let mut write = conn.prepare_cached(&upsert)?;
    let mut stmt = conn.prepare(&select)?;
    let mut rows = stmt.query([])?;
    let mut put = |row: Folded| -> Result<()> {
        let max = row.clock.max_stamp();
        let mut args: Vec<Value> = row.key;
        args.push(Value::Integer(i64_of(row.clock.cl)?));
        args.push(Value::Integer(i64_of(max.db_version)?));
        args.push(Value::Integer(i64_of(max.seq)?));
        args.push(Value::Blob(row.clock.encode()));
        write.execute(params_from_iter(args.iter().map(Bind)))?;
        Ok(())
    };

    let mut fold = Fold::new(t.algo, &live, MASK_BITS, dbv, *seq);
    while let Some(r) = rows.next()? {
        let op: i64 = r.get(0)?;
        let key: Vec<Value> =
            (0..nk).map(|i| r.get_ref(1 + words + i).map(value_of)).collect::<rusqlite::Result<_>>()?;
        if !fold.continues(&key) {
            let base = 1 + words + nk;
            let stored = match r.get_ref(base)? {
                ValueRef::Null => None,
                _ => {
                    let cl = u64_of(r.get(base)?, "causal length")?;
                    let at = cloudsync_core::Cursor::new(
                        u64_of(r.get(base + 1)?, "db_version")?,
                        u64_of(r.get(base + 2)?, "seq")?,
                    );
                    let blob: Vec<u8> = r.get(base + 3)?;
                    Some(crate::sql::stored_clock(cl, at, &blob)?)
                }
            };
            if let Some(done) = fold.start(key, stored) {
                put(done)?;
            }
        }
        let masks = if op == i64::from(OP_UPDATE) {
            (0..words)
                .map(|w| r.get::<_, i64>(1 + w).map(i64::cast_unsigned))
                .collect::<rusqlite::Result<Vec<u64>>>()?
        } else {
            Vec::new()
        };
        fold.apply(op, masks)
            .map_err(|other| Error::Corrupt(format!("change log of table '{}': op {other}", t.name)))?;
    }
    if let Some(done) = fold.finish() {
        put(done)?;
    }
    *seq = fold.seq();
    drop(rows);
    conn.execute_batch(&format!("DELETE FROM {}", t.log()))?;
    Ok(())
}
