//! Folding the local write log into clocks.
//!
//! The triggers append `(op, mask, key)` to `tN_log`; folding takes the committed
//! entries out of the log (one `DELETE … RETURNING`, so entries of transactions still
//! running stay for the next fold), applies them in key order to the row clocks with
//! the core's [`apply_local`], gives every changed row one position
//! `(db_version, seq)` under a new `db_version`, and stores the clocks. It runs under
//! the `db_version` lock at the start of everything that reads or merges clocks.

use cloudsync_core::local::Fold;
use cloudsync_core::value::encode_key;
use cloudsync_core::{ColId, RowClock, Value};
use pgrx::datum::DatumWithOid;
use pgrx::spi::SpiClient;

use crate::batch::{clock_at, ClockWriter};
use crate::error::{Error, Result};
use crate::sql::{datum, get, query, read_value};
use crate::table::{SyncTable, MASK_BITS};
use crate::types::convert_key;
use crate::{meta, types};

/// Whether `t` has local writes not yet folded.
pub fn pending(c: &SpiClient<'_>, t: &SyncTable) -> Result<bool> {
    let rows = query(c, &format!("SELECT EXISTS (SELECT 1 FROM {})", t.log()), &[], |r| get::<bool>(r, 1, "exists"))?;
    Ok(rows.first().copied().unwrap_or(false))
}

/// Folds every synced table's log under one new `db_version`, taken only if some
/// row's clock changed ([`Fold`]). Returns the number of rows whose clock changed.
pub fn fold_all(c: &mut SpiClient<'_>) -> Result<u64> {
    let mut tables = Vec::new();
    for t in SyncTable::all(c)? {
        if pending(c, &t)? {
            tables.push(t);
        }
    }
    if tables.is_empty() {
        return Ok(0);
    }
    meta::lock(c)?;
    let dbv = meta::db_version(c)? + 1;
    let mut seq = 0u64;
    for t in &tables {
        fold_table(c, t, dbv, &mut seq)?;
    }
    if seq > 0 {
        meta::set_db_version(c, dbv)?;
    }
    Ok(seq)
}

/// Key values as bound parameters.
pub fn key_args(t: &SyncTable, key: &[Value]) -> Result<Vec<DatumWithOid<'static>>> {
    t.pk.iter()
        .zip(key)
        .map(|(k, v)| Ok(datum(convert_key(&k.kind, v, &t.display, &k.name, &k.sql_type)?, k.kind.bind())))
        .collect()
}

fn fold_table(c: &mut SpiClient<'_>, t: &SyncTable, dbv: u64, seq: &mut u64) -> Result<()> {
    let keys = t.meta_keys();
    let nk = keys.len();
    let words = t.mask_words as usize;
    let masks: Vec<String> = (0..words).map(|w| format!("m{w}")).collect();
    let reads: Vec<(String, types::Read)> =
        t.pk.iter().zip(&keys).map(|(k, mk)| k.kind.read_expr(&format!("d.{mk}"))).collect();
    let select = format!(
        "WITH d AS (DELETE FROM {log} RETURNING *) \
         SELECT d.op, {dmasks}, {rkeys}, m.cl, m.dbv, m.seq, m.clock FROM d LEFT JOIN {clock} m ON {join} \
         ORDER BY {order}, d.lsn",
        log = t.log(),
        clock = t.clock(),
        dmasks = masks.iter().map(|m| format!("d.{m}")).collect::<Vec<_>>().join(", "),
        rkeys = reads.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>().join(", "),
        join = keys.iter().map(|k| format!("m.{k} = d.{k}")).collect::<Vec<_>>().join(" AND "),
        order = keys.iter().map(|k| format!("d.{k}")).collect::<Vec<_>>().join(", "),
    );
    struct Entry {
        op: i16,
        masks: Vec<i64>,
        key: Vec<Value>,
        clock: Option<RowClock>,
    }
    let entries: Vec<Entry> = c
        .update(select.as_str(), None, &[])?
        .map(|r| {
            let op = get::<i16>(&r, 1, "op")?;
            let masks = (0..words).map(|w| get::<i64>(&r, 2 + w, "mask")).collect::<Result<Vec<_>>>()?;
            let key = reads
                .iter()
                .enumerate()
                .map(|(i, (_, rd))| read_value(&r, 2 + words + i, *rd))
                .collect::<Result<Vec<_>>>()?;
            let clock = clock_at(&r, 2 + words + nk)?;
            Ok(Entry { op, masks, key, clock })
        })
        .collect::<Result<_>>()?;
    if entries.is_empty() {
        return Ok(());
    }

    let live: Vec<ColId> = t.columns.iter().map(|c| c.id).collect();
    let mut writer = ClockWriter::new();
    let mut fold = Fold::new(t.algo, &live, MASK_BITS, dbv, *seq);
    for e in entries {
        if !fold.continues(&e.key) {
            if let Some(done) = fold.start(e.key, e.clock) {
                writer.push(t, &encode_key(&done.key), &done.key, done.clock)?;
            }
        }
        fold.apply(i64::from(e.op), e.masks.iter().map(|m| m.cast_unsigned()))
            .map_err(|other| Error::Corrupt(format!("change log of table {}: op {other}", t.display)))?;
    }
    if let Some(done) = fold.finish() {
        writer.push(t, &encode_key(&done.key), &done.key, done.clock)?;
    }
    *seq = fold.seq();
    writer.flush(c, t)
}
