//! Clock reads and writes: decoding a stored clock ([`clock_at`]), and batches: one statement per table and batch instead of
//! one per row, by passing each column as an array (`unnest`).
//!
//! A fold or a merge touches many rows' clocks. Reading them before the merge
//! ([`prefetch`]) and writing them after it ([`ClockWriter`]) turns two statements
//! per row into two per table, which is most of what an apply costs besides the
//! writes to the user's table.

use std::collections::{HashMap, HashSet};

use cloudsync_core::value::encode_key;
use cloudsync_core::{Cursor, RowClock, Value};
use pgrx::datum::DatumWithOid;
use pgrx::spi::{SpiClient, SpiHeapTupleData};

use crate::error::{Error, Result};
use crate::sql::{exec, get, i64_of, ident, query, read_value, u64_of};
use crate::table::SyncTable;
use crate::types::{convert_key, Bind, Param};

/// The clock stored in columns `base..base + 4` of a row (`cl, dbv, seq, clock`), or
/// `None` when `cl` is NULL (no clock: an outer join found none).
pub fn clock_at(r: &SpiHeapTupleData<'_>, base: usize) -> Result<Option<RowClock>> {
    let Some(cl) = r.get::<i64>(base)? else { return Ok(None) };
    Ok(Some(decode_clock(
        cl,
        get::<i64>(r, base + 1, "dbv")?,
        get::<i64>(r, base + 2, "seq")?,
        &get::<Vec<u8>>(r, base + 3, "clock")?,
    )?))
}

/// Decodes a stored clock.
pub fn decode_clock(cl: i64, dbv: i64, seq: i64, blob: &[u8]) -> Result<RowClock> {
    let at = Cursor::new(u64_of(dbv, "db_version")?, u64_of(seq, "seq")?);
    RowClock::decode(u64_of(cl, "causal length")?, at, blob).map_err(|e| Error::Corrupt(e.to_string()))
}

/// Rows per statement.
const CHUNK: usize = 5_000;

/// One column of a batch, as a typed array.
enum Array {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Array {
    /// The array for key values bound as `b` (keys are integers, text or bytea).
    fn for_bind(b: Bind) -> (Array, &'static str) {
        match b {
            Bind::Int | Bind::Bool | Bind::Float => (Array::Int(Vec::new()), "int8[]"),
            Bind::Text => (Array::Text(Vec::new()), "text[]"),
            Bind::Bytes => (Array::Bytes(Vec::new()), "bytea[]"),
        }
    }

    fn push(&mut self, p: Param) -> Result<()> {
        match (self, p) {
            (Array::Int(v), Param::Int(i)) => v.push(Some(i)),
            (Array::Text(v), Param::Text(s)) => v.push(Some(s)),
            (Array::Bytes(v), Param::Bytes(b)) => v.push(Some(b)),
            (Array::Int(v), Param::Null) => v.push(None),
            (Array::Text(v), Param::Null) => v.push(None),
            (Array::Bytes(v), Param::Null) => v.push(None),
            _ => return Err(Error::Corrupt("key value of an unexpected type".into())),
        }
        Ok(())
    }

    fn into_datum(self) -> DatumWithOid<'static> {
        match self {
            Array::Int(v) => v.into(),
            Array::Text(v) => v.into(),
            Array::Bytes(v) => v.into(),
        }
    }
}

/// `unnest($1::T[], …) AS u(k0, …)` over the key columns, and the casts back to the
/// key columns' types.
fn key_arrays(t: &SyncTable) -> (Vec<String>, Vec<String>) {
    let mut params = Vec::new();
    let mut casts = Vec::new();
    for (i, (k, mk)) in t.pk.iter().zip(t.meta_keys()).enumerate() {
        let (_, array_type) = Array::for_bind(k.kind.bind());
        params.push(format!("${}::{array_type}", i + 1));
        casts.push(format!("u.{mk}::{}", k.sql_type));
    }
    (params, casts)
}

fn key_columns(t: &SyncTable, keys: impl Iterator<Item = Vec<Param>>) -> Result<Vec<DatumWithOid<'static>>> {
    let mut arrays: Vec<Array> = t.pk.iter().map(|k| Array::for_bind(k.kind.bind()).0).collect();
    for key in keys {
        for (a, p) in arrays.iter_mut().zip(key) {
            a.push(p)?;
        }
    }
    Ok(arrays.into_iter().map(Array::into_datum).collect())
}

/// Checked key parameters of `key` for `t`.
fn key_params(t: &SyncTable, key: &[Value]) -> Result<Vec<Param>> {
    t.pk.iter().zip(key).map(|(k, v)| convert_key(&k.kind, v, &t.display, &k.name, &k.sql_type)).collect()
}

/// Runs `SELECT <key columns><extra> FROM <from> JOIN unnest(<keys>) …` over `keys`
/// (decoded key values), a chunk at a time, and maps each row found with its encoded
/// key. `key_cols` are the key columns as `from` names them. Keys that do not fit the
/// key columns are left out (writing them fails later, with the column named).
fn select_by_keys<T>(
    c: &SpiClient<'_>,
    t: &SyncTable,
    keys: &[Vec<Value>],
    from: &str,
    key_cols: &[String],
    extra: &str,
    mut row: impl FnMut(&pgrx::spi::SpiHeapTupleData<'_>, Vec<u8>) -> Result<T>,
) -> Result<Vec<T>> {
    let (params, casts) = key_arrays(t);
    let names = t.meta_keys();
    let reads: Vec<_> = t.pk.iter().zip(key_cols).map(|(k, col)| k.kind.read_expr(col)).collect();
    let sql = format!(
        "SELECT {reads}{extra} FROM {from} JOIN unnest({params}) AS u({names}) ON {join}",
        reads = reads.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>().join(", "),
        params = params.join(", "),
        names = names.join(", "),
        join =
            key_cols.iter().zip(&casts).map(|(col, cast)| format!("{col} = {cast}")).collect::<Vec<_>>().join(" AND "),
    );
    let mut out = Vec::new();
    let valid: Vec<Vec<Param>> = keys.iter().filter_map(|k| key_params(t, k).ok()).collect();
    for chunk in valid.chunks(CHUNK) {
        let args = key_columns(t, chunk.iter().cloned())?;
        out.extend(query(c, &sql, &args, |r| {
            let key =
                reads.iter().enumerate().map(|(i, (_, rd))| read_value(r, i + 1, *rd)).collect::<Result<Vec<_>>>()?;
            row(r, encode_key(&key))
        })?);
    }
    Ok(out)
}

/// The stored clocks of those `keys` (decoded key values) that have one, by encoded
/// key.
pub fn prefetch(c: &SpiClient<'_>, t: &SyncTable, keys: &[Vec<Value>]) -> Result<HashMap<Vec<u8>, RowClock>> {
    let cols: Vec<String> = t.meta_keys().iter().map(|mk| format!("m.{mk}")).collect();
    let nk = cols.len();
    let found =
        select_by_keys(c, t, keys, &format!("{} m", t.clock()), &cols, ", m.cl, m.dbv, m.seq, m.clock", |r, key| {
            let clock = clock_at(r, nk + 1)?.ok_or_else(|| Error::Corrupt("clock row without cl".into()))?;
            Ok((key, clock))
        })?;
    Ok(found.into_iter().collect())
}

/// Those of `keys` (decoded key values) whose row the current role can read in the
/// user's table, by encoded key: run as an impersonated role, this is the row-level
/// security filter of a feed.
pub fn existing(c: &SpiClient<'_>, t: &SyncTable, keys: &[Vec<Value>]) -> Result<HashSet<Vec<u8>>> {
    let cols: Vec<String> = t.pk.iter().map(|k| format!("x.{}", ident(&k.name))).collect();
    let found = select_by_keys(c, t, keys, &format!("{} x", t.rel), &cols, "", |_, key| Ok(key))?;
    Ok(found.into_iter().collect())
}

/// Clocks to store for one table, written in batches; a key written twice keeps its
/// last clock.
pub struct ClockWriter {
    rows: Vec<(Vec<Param>, RowClock)>,
    index: HashMap<Vec<u8>, usize>,
}

impl ClockWriter {
    /// An empty writer.
    pub fn new() -> Self {
        ClockWriter { rows: Vec::new(), index: HashMap::new() }
    }

    /// The clock waiting to be written for an encoded key.
    pub fn get(&self, key: &[u8]) -> Option<&RowClock> {
        self.index.get(key).map(|&i| &self.rows[i].1)
    }

    /// Queues a clock (checking the key against the key columns).
    pub fn push(&mut self, t: &SyncTable, encoded: &[u8], key: &[Value], clock: RowClock) -> Result<()> {
        let params = key_params(t, key)?;
        match self.index.get(encoded) {
            Some(&i) => self.rows[i] = (params, clock),
            None => {
                self.index.insert(encoded.to_vec(), self.rows.len());
                self.rows.push((params, clock));
            }
        }
        Ok(())
    }

    /// Writes every queued clock.
    pub fn flush(&mut self, c: &mut SpiClient<'_>, t: &SyncTable) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let (params, casts) = key_arrays(t);
        let names = t.meta_keys();
        let n = names.len();
        let sql = format!(
            "INSERT INTO {clock} ({k}, cl, dbv, seq, clock) SELECT {casts}, u.cl, u.dbv, u.seq, u.clock \
             FROM unnest({params}, ${a}::int8[], ${b}::int8[], ${d}::int8[], ${e}::bytea[]) AS u({k}, cl, dbv, seq, clock) \
             ON CONFLICT ({k}) DO UPDATE SET cl = excluded.cl, dbv = excluded.dbv, seq = excluded.seq, clock = excluded.clock",
            clock = t.clock(),
            k = names.join(", "),
            casts = casts.join(", "),
            params = params.join(", "),
            a = n + 1,
            b = n + 2,
            d = n + 3,
            e = n + 4,
        );
        let rows = std::mem::take(&mut self.rows);
        self.index.clear();
        for chunk in rows.chunks(CHUNK) {
            let mut args = key_columns(t, chunk.iter().map(|(k, _)| k.clone()))?;
            let (mut cl, mut dbv, mut seq, mut blob) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (_, clock) in chunk {
                let max = clock.max_stamp();
                cl.push(i64_of(clock.cl)?);
                dbv.push(i64_of(max.db_version)?);
                seq.push(i64_of(max.seq)?);
                blob.push(clock.encode());
            }
            args.extend([cl.into(), dbv.into(), seq.into(), blob.into()]);
            exec(c, &sql, &args)?;
        }
        Ok(())
    }
}

impl Default for ClockWriter {
    fn default() -> Self {
        ClockWriter::new()
    }
}
